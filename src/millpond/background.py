"""Background threads yield the CPU to the threads that answer clients.

Why: on a small machine the collector's event loop and the log's writer share the cores
with maintenance that can wait (the per-person index catching up, sealing archive
ranges). When both want a core, the maintenance should be the one that waits: a
client's request held behind a tick of index copying is latency the SDK sees, while the
index being a few hundred milliseconds later is invisible. RocksDB lowers its compaction
threads' priority for the same reason.

How: Linux schedules threads, not processes, and ``nice`` applies per thread
(``setpriority(PRIO_PROCESS, tid)``); an unprivileged thread may lower its own priority.
Elsewhere this does nothing.
"""

from __future__ import annotations

import contextlib
import os
import threading

#: The nice value background threads run at (0 is normal, 19 the lowest): at 10 a
#: thread gets about a tenth of a core's share against a normal one, and all of an
#: idle core.
BACKGROUND_NICE = 10


def lower_this_thread() -> None:
    """Run the calling thread at :data:`BACKGROUND_NICE` (if the platform allows), or
    leave it lower if it already is (a server started under ``nice``)."""
    with contextlib.suppress(AttributeError, OSError):
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid,
                       max(BACKGROUND_NICE, os.getpriority(os.PRIO_PROCESS, tid)))
