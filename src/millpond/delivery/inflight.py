"""Several requests in flight without letting one user's events overtake each other.

Why: with one request in flight a destination's throughput is one batch per round trip
(a webhook of batch 1 to a 50 ms receiver: 20 events/s), so any faster source builds an
unbounded backlog. But a vendor that sees a user's ``identify`` after their ``track``,
or "Order Refunded" before "Order Completed", applies them in the wrong order.

How: :class:`OrderedLanes` runs each batch as its own task, up to ``limit`` at once, and
a batch carries the *keys* of its users. A batch waits until every earlier batch that
shares a key with it has finished (sent, dead-lettered, or retried until it did); then
it may go. Batches of other users overtake freely. Retries happen inside the batch's
task, so a retried request holds its users' later batches back: retries never reorder a
user's events either. Dependencies only point at earlier batches, so there is no cycle.

Finishing out of order is the ledger's job: the saved cursor stays below the lowest
unfinished event (see :mod:`millpond.delivery.ledger`). So that a crash resends no more
than before times ``limit``, a batch may start only while it is fewer than ``limit``
batches after the oldest unfinished one (a sliding window, as in TCP): one slow or
retried request lets the others run ahead by at most that much, then holds them too.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Iterable
from types import TracebackType


class OrderedLanes:
    """Runs submitted coroutines concurrently, in per-key order; see the module docstring.

    Use as ``async with OrderedLanes(limit) as lanes: await lanes.submit(keys, fn)``;
    leaving the block waits for everything submitted. If one batch fails, the others are
    cancelled (a :class:`asyncio.TaskGroup`), and batches waiting behind a failed or
    cancelled one never start.
    """

    def __init__(self, limit: int):
        self.limit = max(1, int(limit))
        self._numbers = itertools.count()
        #: ``(number, finished)`` of submitted batches, oldest first, down to the oldest
        #: unfinished one (the window's start).
        self._window: deque[tuple[int, asyncio.Future[None]]] = deque()
        #: The last submitted batch of each key, until it finishes.
        self._last: dict[Hashable, asyncio.Future[None]] = {}
        self._group = asyncio.TaskGroup()
        #: Batches submitted and not yet finished (waiting for a key, or running).
        self.outstanding = 0

    async def __aenter__(self) -> OrderedLanes:
        await self._group.__aenter__()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> bool | None:
        return await self._group.__aexit__(exc_type, exc, tb)

    async def submit(self, keys: Iterable[Hashable],
                     run: Callable[[], Awaitable[None]]) -> None:
        """Start ``run`` once the earlier batches sharing any of ``keys`` finished; waits
        while the oldest unfinished batch is ``limit`` batches back (that is the reader's
        back-pressure)."""
        window = self._window
        number = next(self._numbers)
        while True:
            while window and window[0][1].done():
                window.popleft()
            if not window or number - window[0][0] < self.limit:
                break
            await asyncio.wait([window[0][1]])
        keys = frozenset(keys)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        window.append((number, done))
        after = {f for k in keys if (f := self._last.get(k)) is not None}
        for key in keys:
            self._last[key] = done
        self.outstanding += 1
        self._group.create_task(self._run(after, run, done, keys))

    async def _run(self, after: set[asyncio.Future[None]], run: Callable[[], Awaitable[None]],
                   done: asyncio.Future[None], keys: frozenset[Hashable]) -> None:
        ok = False
        try:
            if after:
                await asyncio.wait(after)  # never cancels what it waits for
                if any(f.cancelled() for f in after):
                    return  # an earlier batch of these users did not finish: neither may this
            await run()
            ok = True
        finally:
            if ok:
                done.set_result(None)
            else:
                done.cancel()
            for key in keys:
                if self._last.get(key) is done:
                    del self._last[key]
            self.outstanding -= 1
