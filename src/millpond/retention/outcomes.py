"""The background job that forgets old outcome rows: the events behind delivery counts.

Why a retention for them: a checkpoint records which events ended how (a few bytes per
event, ~4.5 MB per million events), so the console's funnel can link every count to its
events. Kept forever, that grows with everything ever delivered, while the question
"which events were dead-lettered for HTTP 400" is asked about recent days. The counts
are counters in the run's row, not these rows: they stay exact; only the listing of
events older than ``delivery.outcome_retention_days`` goes, and the console says so.

Why in steps: every :data:`INTERVAL_SECONDS` it asks the run store to forget rows written
before ``now - retention``, :data:`STEP` rows per call (one short transaction each), so a
pump's checkpoint waits at most one step for the state file's write lock, never for one
long delete of millions of rows.

The clock is injectable (``clock() -> Unix seconds``): tests move time, not sleep.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from millpond.storage.contracts import RunStore, StorageUnavailable

log = logging.getLogger("millpond.retention")

#: How often the job looks for rows past their retention.
INTERVAL_SECONDS = 600.0
#: Rows forgotten per transaction (each holds the seqs of one checkpoint and outcome).
STEP = 2_000
DAY = 86_400.0


class OutcomeRetention:
    """Prunes outcome rows older than ``days``; see the module docstring."""

    def __init__(self, runs: RunStore, days: int, *, clock: Callable[[], float] = time.time,
                 interval: float = INTERVAL_SECONDS, step: int = STEP):
        self.runs = runs
        self.days = days
        self.clock = clock
        self.interval = interval
        self.step = step
        #: Rows forgotten since the process started.
        self.pruned = 0

    def cutoff(self) -> float:
        """Rows written at or before this time (Unix seconds) are no longer kept."""
        return self.clock() - self.days * DAY

    async def run_once(self) -> int:
        """Forget what is past the retention now, step by step; how many rows went."""
        before = self.cutoff()
        total = 0
        while True:
            n = await asyncio.to_thread(self.runs.prune_outcomes, before, self.step)
            total += n
            if n < self.step:
                break
            await asyncio.sleep(0)  # let checkpoints and requests in between steps
        if total:
            self.pruned += total
            log.info("forgot %s outcome rows (the events behind delivery counts) written "
                     "more than %d days ago; the counts stay", f"{total:,}", self.days,
                     extra={"phase": "outcomes_pruned", "rows": total, "before": before})
        return total

    async def run(self) -> None:
        """Run until cancelled (the server's lifecycle owns the task)."""
        while True:
            try:
                await self.run_once()
            except StorageUnavailable:  # a full disk: the storage logs it, once
                pass
            except Exception:  # noqa: BLE001 - try again next time; nothing half-done
                log.exception("pruning outcome rows failed; retrying at the next interval")
            await asyncio.sleep(self.interval)
