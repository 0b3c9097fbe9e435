"""Waiting for something another process or thread will do."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(condition: Callable[[], Any], timeout: float = 60.0, every: float = 0.05,
               what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something truthy, and return that.

    Servers, pumps and fakes work on their own threads, so tests poll rather than sleep a
    fixed time: fast when things are fast, and a clear message naming ``what`` when not.
    The default timeout is long because only a failing test waits it out, while ``make
    test`` runs two test processes on a machine other jobs share: a passing test must not
    fail for being starved.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)
