"""Reading a window ahead of its consumer (a replay's pump), on a thread of its own.

Why a thread that keeps reading rather than one read handed to a pool per chunk asked
for: each hand-off waits for a pool thread to wake and win the GIL from the busy event
loop (often a scheduler slice, tens of ms on a loaded machine), so a read started only
when the previous chunk arrived was regularly still on its way when the pump wanted it.
A reader that runs up to ``depth`` chunks ahead absorbs those delays. SQLite does the
work of a read without the GIL (the packed chunks of :mod:`.index`), so this costs the event
loop's core next to nothing. One thread also means one log connection, whose page cache
serves chunk after chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

C = TypeVar("C")  # a cursor: where the next read starts
T = TypeVar("T")  # what a chunk holds

#: Chunks read and not yet taken, at most.
DEPTH = 2


class ReadAhead(Generic[C, T]):
    """``await get()`` returns ``read(after)``, then ``read(next_after(chunk))``, ... in
    order, until an empty chunk (returned too, then the thread ends). A read's exception
    is raised by the ``get`` that would have returned its chunk. ``close`` stops the
    thread at its next step; call it when the consumer stops. ``finish``, if given, runs
    in the thread as it ends (after its last read)."""

    def __init__(self, read: Callable[[C], list[T]], after: C,
                 next_after: Callable[[list[T]], C],
                 depth: int = DEPTH, finish: Callable[[], None] | None = None):
        self._read = read
        self._finish = finish
        self._after = after
        self._next_after = next_after
        self._room = threading.Semaphore(depth)
        self._stop = threading.Event()
        self._ready: asyncio.Queue[list[T] | BaseException] | None = None
        self._thread: threading.Thread | None = None

    async def get(self) -> list[T]:
        if self._ready is None:
            self._ready = asyncio.Queue()
            self._thread = threading.Thread(target=self._run, name="replay-read", daemon=True,
                                            args=(asyncio.get_running_loop(), self._ready))
            self._thread.start()
        item = await self._ready.get()
        self._room.release()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._room.release()  # a reader waiting for room wakes up and sees the stop

    def _run(self, loop: asyncio.AbstractEventLoop,
             ready: asyncio.Queue[list[T] | BaseException]) -> None:
        try:
            self._read_ahead(loop, ready)
        finally:
            if self._finish is not None:
                self._finish()

    def _read_ahead(self, loop: asyncio.AbstractEventLoop,
                    ready: asyncio.Queue[list[T] | BaseException]) -> None:
        after = self._after
        while True:
            self._room.acquire()
            if self._stop.is_set():
                return
            try:
                chunk = self._read(after)
            except Exception as exc:  # noqa: BLE001 - handed to the pump, which fails with it
                self._hand(loop, ready, exc)
                return
            if not self._hand(loop, ready, chunk) or not chunk:
                return
            after = self._next_after(chunk)

    @staticmethod
    def _hand(loop: asyncio.AbstractEventLoop, ready: asyncio.Queue[list[T] | BaseException],
              item: list[T] | BaseException) -> bool:
        """Queue ``item`` for ``get``; False when the loop is gone (nobody will get it)."""
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(ready.put_nowait, item)
            return True
        return False
