"""Concurrent calls that take a list, merged into one call while an earlier one runs.

Why: every append on the JetStream log asks the dedupe table which of its keys it saw and
records its rows before it returns, and the table has one connection: with a collector's
appends in flight, each waited for the ones before it, one round trip and one commit
apiece. Merged, the appends that arrive while a call runs go together in the next one, so
the table's cost per append falls as load rises (what the embedded store's group commit
does for its writes), and an append still returns only after its own rows are durable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["Coalescer"]

T = TypeVar("T")
R = TypeVar("R")


class _Batch(Generic[T, R]):
    __slots__ = ("done", "items")

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.items: list[T] = []
        self.done: asyncio.Future[R] = loop.create_future()


class Coalescer(Generic[T, R]):
    """``await coalescer(items)`` runs ``call`` on ``items`` together with the items of
    every other call made before it started, and returns that call's result (each caller
    gets the whole result: ``call`` must answer in a shape each caller can pick its own
    part from) or raises its error. One call runs at a time; made on one event loop."""

    def __init__(self, call: Callable[[list[T]], Awaitable[R]]):
        self._call = call
        self._open: _Batch[T, R] | None = None
        self._runner: asyncio.Task[None] | None = None

    async def __call__(self, items: Sequence[T]) -> R:
        batch = self._open
        if batch is None:
            batch = self._open = _Batch(asyncio.get_running_loop())
        batch.items.extend(items)
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(self._run())
        # shielded: a caller that gives up does not cancel the call of the others
        return await asyncio.shield(batch.done)

    async def _run(self) -> None:
        batch: _Batch[T, R] | None = None
        try:
            while (batch := self._open) is not None:
                self._open = None
                try:
                    batch.done.set_result(await self._call(batch.items))
                except Exception as exc:  # every caller of the batch gets it
                    batch.done.set_exception(exc)
                    batch.done.exception()  # retrieved: nobody may be left waiting
        finally:
            self._runner = None
            for left in (batch, self._open):  # cancelled with the loop: nobody hangs
                if left is not None and not left.done.done():
                    left.done.cancel()
