"""A background thread lowers its own priority and only its own."""

from __future__ import annotations

import os
import threading

from millpond.background import BACKGROUND_NICE, lower_this_thread


def test_only_the_calling_thread_runs_at_the_background_priority():
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen: list[int] = []

    def background() -> None:
        lower_this_thread()
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    thread = threading.Thread(target=background)
    thread.start()
    thread.join()
    assert seen == [max(before, BACKGROUND_NICE)]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before
