"""The replay runner: a :class:`~millpond.delivery.pump.Pump` over a closed event-time window.

Same machine as live delivery (DESIGN.md "One mechanism for live and replay"); what
differs is only what it is given:

- a :class:`WindowSource` reading the window chunk by chunk in (ts, seq) order
  (``EventIndex.scan``, which may read ahead). ``seq`` is not monotonic in that order,
  so each row gets a running *position* (0, 1, 2, ...) as the ledger's key; the chunks
  in flight turn the ledger's "just below the lowest unfinished" position back into a
  (ts, seq) cursor, and a resumed replay scans strictly after it. Dead letters and
  counters keep the real seq;
- the destination's shared :class:`~millpond.delivery.sender.Deliverer` at BACKGROUND
  priority behind a :class:`BackgroundSender`, which takes only budget live traffic
  left: it waits while the shared token bucket is in debt, applies the replay's own
  ``rate`` when that is below the destination's limit, and keeps batches small enough
  (:func:`~millpond.delivery.rate_limit.batch_size` of the replay's rate) that live traffic
  never waits long behind one and no 1-second window carries more than the rate. A
  replay starting or resuming empties the shared buckets of tokens saved up while idle,
  so it begins without a burst;
- a ``persist`` writing the replay run's checkpoint (cursor, scanned, counters) and its
  dead letters atomically (``RunStore.checkpoint``), with ``durable=False``: a process
  crash loses none of it, a power loss may take the replay back a few batches, which it
  then resends.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque

from millpond.actions import compile_trigger
from millpond.delivery.batcher import Batch, Batcher
from millpond.delivery.dead_log import DeadLetterLog
from millpond.delivery.evaluate import SKIPPED, Evaluator, dead_letters
from millpond.delivery.ledger import Ledger
from millpond.delivery.pump import Pump
from millpond.delivery.rate_limit import RateLimiter, batch_size
from millpond.delivery.sender import BACKGROUND, Deliverer
from millpond.replays.plan import plan_window
from millpond.storage.contracts import EventIndex, RunStore
from millpond.storage.models import Run, StoredEvent, WindowCursor

FILTERED = "filtered out by the replay filter"
#: Rows per read of the window: large enough for fast scans, small enough for flat memory.
CHUNK = 2000
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
    """A replay's slice: keyed chunks ``(first position, rows)``; see the module
    docstring.

    Why whole chunks are kept (not one (position, ts, seq) entry per row): the cursor of
    a position is ``rows[position - first]`` of its chunk, so tracking rows in flight
    costs nothing per event; a chunk is let go once the cursor has passed its last row.
    """

    keyed = True

    def __init__(self, index: EventIndex, plan: dict, after: WindowCursor | None,
                 chunk: int = CHUNK):
        self._scan = index.scan(plan_window(plan), after=after, chunk=chunk)
        self.after = after
        self._next = 0  # the position of the next row read
        self._chunks: deque[tuple[int, list[StoredEvent]]] = deque()  # (first, rows) in flight
        self._done = False
        self._last: WindowCursor | None = None

    async def next_chunk(self, timeout: float) -> tuple[int, list[StoredEvent]] | None:
        if self._done:
            return None
        rows = await anext(self._scan, None)
        if not rows:
            self._done = True
            return None
        last = rows[-1]
        self.after = WindowCursor(last.ts_ms, last.seq)
        first = self._next
        self._next = first + len(rows)
        self._chunks.append((first, rows))
        return first, rows

    async def aclose(self) -> None:
        """Stop reading (the pump stopped)."""
        await self._scan.aclose()

    def cursor_at(self, position: int) -> WindowCursor | None:
        """The (ts, seq) of the row at ``position``; forgets every chunk the cursor has
        passed. Called by one checkpoint writer at a time (deque ends are thread-safe),
        never with a position below the last one asked for."""
        chunks = self._chunks
        while chunks and chunks[0][0] <= position:
            first, rows = chunks[0]
            if position < first + len(rows) - 1:
                row = rows[position - first]
                self._last = WindowCursor(row.ts_ms, row.seq)
                break
            row = rows[-1]
            # kept: a failed write asks again for the same position
            self._last = WindowCursor(row.ts_ms, row.seq)
            chunks.popleft()
        return self._last


class BackgroundSender:
    """Delivers replay batches through the shared deliverer; see the module docstring."""

    def __init__(self, deliverer: Deliverer, rate: float, dest_rate: float):
        self.deliverer = deliverer
        self.dtype = deliverer.dtype
        # its own pace, when slower than the destination's: in line, like the limiter's
        self.own = RateLimiter(rate, burst_events=batch_size(1 << 30, rate)) \
            if rate < dest_rate else None
        deliverer.limiter.restart()  # start and resume without a burst
        self.sent: deque[tuple[float, int]] = deque(maxlen=64)

    async def deliver(self, batch: Batch, *, priority: int = BACKGROUND, on_retry=None):
        n = len(batch)
        if self.own is not None:
            await self.own.acquire(n)
        limiter = self.deliverer.limiter
        # Live first: while the shared budget is in debt, live traffic is using it.
        while (debt := limiter.debt()) > 0:
            await asyncio.sleep(debt)
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

    def __init__(self, replay: Run, runs: RunStore, index: EventIndex, deliverer: Deliverer,
                 evaluator: Evaluator, batching, dest_rate: float):
        self.replay = replay
        self.runs = runs
        plan = replay.spec
        cursor = replay.cursor if isinstance(replay.cursor, WindowCursor) else None
        self.source = WindowSource(index, plan, cursor)
        self.sender = BackgroundSender(deliverer, plan["rate"], dest_rate)
        max_events = batch_size(batching.max_events, min(plan["rate"], dest_rate))
        self._saved = -1
        self.pump = Pump(self.source, ReplayEvaluator(evaluator, plan.get("filter")),
                         self.sender,  # type: ignore[arg-type] - a Deliverer look-alike
                         Batcher(max_events, batching.max_bytes, batching.linger_seconds),
                         Ledger(-1), self._persist, priority=BACKGROUND,
                         queue_size=QUEUED_BATCHES,
                         max_in_flight=deliverer.gate.capacity,
                         dead_log=DeadLetterLog(
                             f"replay {replay.id} of destination {plan['destination_name']}",
                             {"destination": plan["destination_name"], "activity": "replay",
                              "replay_id": replay.id}))
        self.started = time.time()

    def _persist(self, position: int, counts: Counter, dead: list, _finished: list) -> None:
        replay = self.replay
        cursor = self.source.cursor_at(position) if position > self._saved else None
        self.runs.checkpoint(replay.id, cursor=cursor, counts=counts,
                             dead=dead_letters(dead, replay.destination_id, replay.id),
                             scanned=max(0, position - self._saved), durable=False)
        self._saved = max(self._saved, position)

    async def run(self) -> None:
        try:
            await self.pump.run()
        finally:
            await self.source.aclose()

    def current_rate(self) -> float:
        return self.sender.current_rate()
