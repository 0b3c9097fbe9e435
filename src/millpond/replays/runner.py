"""The replay runner: a :class:`~millpond.delivery.pump.Pump` over a closed event-time window.

Same machine as live delivery (DESIGN.md "One mechanism for live and replay"); what
differs is only what it is given:

- a :class:`~millpond.delivery.slices.WindowSlice` over the plan's window;
- the destination's shared :class:`~millpond.delivery.sender.Deliverer` at BACKGROUND
  priority with a :class:`~millpond.delivery.share.BackgroundShare`, which takes only
  budget live traffic left and applies the replay's own ``rate``; batches are kept small
  (:func:`~millpond.delivery.rate_limit.batch_size` of the replay's rate) so that live
  traffic never waits long behind one and no 1-second window carries more than the rate.
  A replay starting or resuming empties the shared buckets of tokens saved up while
  idle, so it begins without a burst;
- the run's :class:`~millpond.delivery.runs.Checkpoint` (cursor, scanned, counters and
  dead letters atomically) with ``durable=False``: a process crash loses none of it, a
  power loss may take the replay back a few batches, which it then resends.
"""

from __future__ import annotations

import time

from millpond.actions import compile_trigger
from millpond.delivery.batcher import Batcher, Work
from millpond.delivery.dead_log import DeadLetterLog
from millpond.delivery.evaluate import Evaluator
from millpond.delivery.ledger import Ledger
from millpond.delivery.outcomes import CountKey, Outcome
from millpond.delivery.pump import Pump
from millpond.delivery.rate_limit import batch_size
from millpond.delivery.runs import Checkpoint
from millpond.delivery.sender import BACKGROUND, Deliverer
from millpond.delivery.share import BackgroundShare
from millpond.delivery.slices import WindowSlice
from millpond.replays.plan import FILTERED, plan_window
from millpond.storage.contracts import EventIndex, RunStore
from millpond.storage.models import DeadLetter, Run, WindowCursor

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

    def evaluate(self, event: dict, only: frozenset[str] | None = None,
                 ) -> tuple[list[tuple[str, Work]], list[CountKey], list[DeadLetter]]:
        if self._filter is not None and not self._filter(event):
            return [], [("", Outcome.SKIPPED, FILTERED)], []
        return self._inner(event, only)


class ReplayRunner:
    """One replay at work on one running destination; ``run`` returns when it is done."""

    def __init__(self, replay: Run, runs: RunStore, index: EventIndex, deliverer: Deliverer,
                 evaluator: Evaluator, batching, dest_rate: float):
        self.replay = replay
        self.runs = runs
        plan = replay.spec
        cursor = replay.cursor if isinstance(replay.cursor, WindowCursor) else None
        self.source = WindowSlice(index, plan_window(plan), cursor, chunk=CHUNK)
        self.share = BackgroundShare(plan["rate"], dest_rate)
        max_events = batch_size(batching.max_events, min(plan["rate"], dest_rate))
        deliverer.limiter.restart()  # start and resume without a burst
        self.pump = Pump(self.source, ReplayEvaluator(evaluator, plan.get("filter")),
                         deliverer,
                         Batcher(max_events, batching.max_bytes, batching.linger_seconds),
                         Ledger(-1), Checkpoint(runs, replay, self.source, start=-1,
                                                scanned=True, durable=False),
                         priority=BACKGROUND, share=self.share, queue_size=QUEUED_BATCHES,
                         max_in_flight=deliverer.gate.capacity, run=replay.id,
                         dead_log=DeadLetterLog(
                             f"replay {replay.id} of destination {plan['destination_name']}",
                             {"destination": plan["destination_name"], "activity": "replay",
                              "replay_id": replay.id}))
        self.started = time.time()

    async def run(self) -> None:
        await self.pump.run()

    def current_rate(self) -> float:
        return self.share.current_rate()
