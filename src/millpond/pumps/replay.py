"""The replay runner: a :class:`~millpond.pumps.pump.Pump` over a closed event-time window.

Same machine as live delivery (DESIGN.md "One mechanism for live and replay"); what
differs is only what it is given:

- a :class:`WindowSource` reading the window chunk by chunk in (ts, seq) order, a
  couple of chunks ahead on a thread of its own (:mod:`~millpond.pumps.read_ahead`).
  ``seq`` is not monotonic in that order, so each row gets a running *position* (0, 1,
  2, ...) as the ledger's key; the chunks in flight turn the ledger's "just below the
  lowest unfinished" position back into a (ts, seq) cursor, and a resumed replay scans
  strictly after it. Dead letters and counters keep the real seq;
- the destination's shared :class:`~millpond.pumps.deliver.Deliverer` at BACKGROUND
  priority behind a :class:`BackgroundSender`, which takes only budget live traffic
  left: it waits while the shared token bucket is in debt, applies the replay's own
  ``rate`` when that is below the destination's limit, and keeps batches small enough
  (about 0.2 s of budget) that live traffic never waits long behind one;
- a ``persist`` writing the replay row (cursor, scanned, counters) and its dead letters
  in one transaction (:class:`~millpond.pumps.replay_store.ReplayStore`), without an
  fsync: a process crash loses none of it, a power loss may take the replay back a few
  batches, which it then resends.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque

from millpond.actions import compile_trigger
from millpond.log.base import EventLog
from millpond.pumps.batcher import Batch, Batcher
from millpond.pumps.dead_log import DeadLetterLog
from millpond.pumps.deliver import BACKGROUND, Deliverer
from millpond.pumps.evaluate import SKIPPED, Evaluator
from millpond.pumps.ledger import Ledger
from millpond.pumps.pump import Pump
from millpond.pumps.rate_limit import TokenBucket
from millpond.pumps.read_ahead import ReadAhead
from millpond.pumps.replay_plan import scan_args
from millpond.pumps.replay_store import Replay, ReplayStore

FILTERED = "filtered out by the replay filter"
#: Rows per read of the window: large enough for fast scans, small enough for flat memory.
CHUNK = 2000
#: A replay batch costs at most this many seconds of the destination's budget.
BATCH_SECONDS = 0.2
#: Batches ready to send, at most: a replay runs flat out, and a checkpoint that waits
#: for the GIL or a busy core (tens of ms) should not stop the reader at once.
QUEUED_BATCHES = 4


class ReplayEvaluator:
    """The destination's evaluator behind the replay's optional FQL filter."""

    def __init__(self, evaluator: Evaluator, flt: str | None):
        self._inner = evaluator.evaluate
        self._filter = compile_trigger(flt).matches if flt else None

    def evaluate(self, event: dict, only: frozenset[str] | None = None):
        if self._filter is not None and not self._filter(event):
            return [], [("", SKIPPED, FILTERED)], []
        return self._inner(event, only)


class WindowSource:
    """A replay's slice: keyed chunks ``(first position, rows (ts, seq, body))``; see the
    module docstring.

    Why whole chunks are kept (not one (position, ts, seq) entry per row): the cursor of
    a position is ``rows[position - first]`` of its chunk, so tracking rows in flight
    costs nothing per event; a chunk is let go once the cursor has passed its last row.
    """

    keyed = True

    def __init__(self, log: EventLog, plan: dict, after: tuple[int, int] | None,
                 chunk: int = CHUNK):
        self.log = log
        self.args = scan_args(plan)
        self.after = after
        self.chunk = chunk
        self._next = 0  # the position of the next row read
        self._chunks: deque[tuple[int, list]] = deque()  # (first position, rows) in flight
        self._done = False
        self._last: tuple[int, int] | None = None
        self._ahead = ReadAhead(self._read, after, _after_chunk)

    def _read(self, after: tuple[int, int] | None) -> list[tuple[int, int, bytes]]:
        return self.log.window_chunk(limit=self.chunk, after=after, **self.args)

    async def next_chunk(self, timeout: float) -> tuple[int, list] | None:
        if self._done:
            return None
        rows = await self._ahead.get()
        if not rows:  # with include_live the window may still grow: only empty ends it
            self._done = True
            return None
        self.after = _after_chunk(rows)
        first = self._next
        self._next = first + len(rows)
        self._chunks.append((first, rows))
        return first, rows

    def close(self) -> None:
        """Stop reading ahead (the pump stopped)."""
        self._ahead.close()

    def cursor_at(self, position: int) -> tuple[int, int] | None:
        """The (ts, seq) of the row at ``position``; forgets every chunk the cursor has
        passed. Called by one checkpoint writer at a time (deque ends are thread-safe),
        never with a position below the last one asked for."""
        chunks = self._chunks
        while chunks and chunks[0][0] <= position:
            first, rows = chunks[0]
            if position < first + len(rows) - 1:
                ts, seq, _ = rows[position - first]
                self._last = (ts, seq)
                break
            ts, seq, _ = rows[-1]
            self._last = (ts, seq)  # kept: a failed write asks again for the same position
            chunks.popleft()
        return self._last


def _after_chunk(rows: list[tuple[int, int, bytes]]) -> tuple[int, int]:
    """Where the window continues after ``rows``: their last (ts, seq)."""
    return rows[-1][0], rows[-1][1]


class BackgroundSender:
    """Delivers replay batches through the shared deliverer; see the module docstring."""

    def __init__(self, deliverer: Deliverer, rate: float, dest_rate: float):
        self.deliverer = deliverer
        self.dtype = deliverer.dtype
        self.own = TokenBucket(rate, max(1.0, rate * BATCH_SECONDS)) if rate < dest_rate \
            else None
        self.sent: deque[tuple[float, int]] = deque(maxlen=64)

    async def deliver(self, batch: Batch, *, priority: int = BACKGROUND, on_retry=None):
        n = len(batch)
        if self.own is not None:
            wait = self.own.reserve(n)
            if wait > 0:
                await asyncio.sleep(wait)
        limiter = self.deliverer.limiter
        for bucket in (limiter.events, limiter.requests):
            # Live first: while the shared budget is in debt, live traffic is using it.
            while bucket is not None and (left := bucket.available()) < 0:
                await asyncio.sleep(-left / bucket.rate)
        results = await self.deliverer.deliver(batch, priority=BACKGROUND, on_retry=on_retry)
        self.sent.append((time.monotonic(), n))
        return results

    def current_rate(self, window: float = 10.0) -> float:
        """Items per second over the last ``window`` seconds of sends."""
        now = time.monotonic()
        recent = [(t, n) for t, n in list(self.sent) if now - t <= window]
        if len(recent) < 2:
            return 0.0
        span = max(recent[-1][0] - recent[0][0], 1e-6)
        return sum(n for _, n in recent[1:]) / span


class ReplayRunner:
    """One replay at work on one running destination; ``run`` returns when it is done."""

    def __init__(self, replay: Replay, store: ReplayStore, log: EventLog, deliverer: Deliverer,
                 evaluator: Evaluator, batching, dest_rate: float):
        self.replay = replay
        self.store = store
        plan = replay.plan
        self.source = WindowSource(log, plan, replay.cursor)
        self.sender = BackgroundSender(deliverer, plan["rate"], dest_rate)
        max_events = max(1, min(batching.max_events, int(plan["rate"] * BATCH_SECONDS)))
        self._saved = -1
        self.pump = Pump(self.source, ReplayEvaluator(evaluator, plan.get("filter")),
                         self.sender,  # type: ignore[arg-type] - a Deliverer look-alike
                         Batcher(max_events, batching.max_bytes, batching.linger_seconds),
                         Ledger(-1), self._persist, priority=BACKGROUND,
                         queue_size=QUEUED_BATCHES,
                         dead_log=DeadLetterLog(
                             f"replay {replay.id} of destination {plan['destination_name']}",
                             {"destination": plan["destination_name"], "activity": "replay",
                              "replay_id": replay.id}))
        self.started = time.time()

    def _persist(self, position: int, counts: Counter, dead: list, _finished: list) -> None:
        cursor = self.source.cursor_at(position) if position > self._saved else None
        self.store.checkpoint(self.replay, cursor, max(0, position - self._saved), counts,
                              dead)
        self._saved = max(self._saved, position)

    async def run(self) -> None:
        try:
            await self.pump.run()
        finally:
            self.source.close()

    def current_rate(self) -> float:
        return self.sender.current_rate()
