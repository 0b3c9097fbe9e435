"""A lock that says when someone starts waiting for it: deterministic race tests hold it
and proceed once the other side is known to be blocked on it."""

from __future__ import annotations

import threading


class WatchedLock:
    """A drop-in for a ``threading.Lock`` used as a context manager (the Parquet location
    lock), setting :attr:`contended` when an acquire has to wait."""

    def __init__(self) -> None:
        self.inner = threading.Lock()
        self.contended = threading.Event()

    def __enter__(self) -> None:
        if not self.inner.acquire(blocking=False):
            self.contended.set()
            self.inner.acquire()

    def __exit__(self, *exc) -> None:
        self.inner.release()
