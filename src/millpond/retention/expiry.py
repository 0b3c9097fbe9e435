"""The background job that applies each source's retention: remove what has expired.

Why a job and not a check on read: retention is a promise to *delete* (storage costs and
data-protection rules count what is kept, not what is shown), and deleting is work best
done in bounded steps beside live traffic. Every :data:`INTERVAL_SECONDS` (and at once
when a source's retention changes) it asks the log to expire, per source with a finite
retention (deleted sources' tombstones included: their events stay until their own
retention takes them), what arrived before ``now - retention``. Each step is one bounded
transaction (``EventLog.expire``), so the collector's commits wait at most one step for
the log's write lock.

What was derived from removed events is derived again without them: each step goes to
``on_removed`` (source id, cutoff, ``Expiry``: the segments re-evaluate its ``owners``,
and record the cutoff as applied once the pass is ``done``).

The clock is injectable (``clock() -> Unix ms``): tests move time instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from millpond.retention.policy import cutoff_ms
from millpond.sources.service import SourceService
from millpond.storage.contracts import EventLog, StorageUnavailable
from millpond.storage.models import Expiry, Source

log = logging.getLogger("millpond.retention")

#: How often the job looks for expired events.
INTERVAL_SECONDS = 60.0
#: Events removed per transaction.
STEP = 10_000


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


class RetentionJob:
    """Expires each source's events per its ``retention``; see the module docstring."""

    def __init__(self, events: EventLog, sources: SourceService, *,
                 clock: Callable[[], int] = wall_clock_ms,
                 interval: float = INTERVAL_SECONDS, step: int = STEP,
                 on_removed: Callable[[str, int, Expiry], Awaitable[object]] | None = None):
        self.events = events
        self.on_removed = on_removed
        self.sources = sources
        self.clock = clock
        self.interval = interval
        self.step = step
        self._due = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Events removed per source id since the process started.
        self.removed: dict[str, int] = {}

    def nudge(self) -> None:
        """A retention changed: run soon, not at the next interval. Any thread (the API's
        sync routes run in worker threads)."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody runs
                loop.call_soon_threadsafe(self._due.set)

    async def run_once(self) -> dict[str, int]:
        """Expire what has expired now; events removed per source id (only those with
        some)."""
        now_s = self.clock() / 1000
        removed: dict[str, int] = {}
        for source in self.sources.origins():
            before = cutoff_ms(source.retention, now_s)
            if before is None:
                continue
            total = 0
            while True:
                step = await self.events.expire(source.id, before, limit=self.step)
                total += step.removed
                if self.on_removed is not None:
                    await self._derive_again(source, before, step)
                if step.done:
                    break
            if total:
                removed[source.id] = total
                self.removed[source.id] = self.removed.get(source.id, 0) + total
                log.info("retention removed %s events of source %s that arrived before %s "
                         "(retention %s)", f"{total:,}", source.name,
                         time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(before / 1000)),
                         source.retention,
                         extra={"phase": "expired", "source": source.id, "events": total,
                                "before_ms": before})
        return removed

    async def _derive_again(self, source: Source, before: int, step: Expiry) -> None:
        """``on_removed``; a failure is logged (the events are gone either way: the next
        step must still run)."""
        assert self.on_removed is not None
        try:
            await self.on_removed(source.id, before, step)
        except Exception:  # noqa: BLE001 - logged; the segments notice at their next start
            log.exception("could not re-evaluate the segments of %s people whose events "
                          "of source %s retention removed", f"{len(step.owners):,}",
                          source.name)

    async def run(self) -> None:
        """Run until cancelled (the server's lifecycle owns the task)."""
        self._loop = asyncio.get_running_loop()
        while True:
            try:
                await self.run_once()
            except StorageUnavailable:  # a full disk: the storage logs it, once
                pass
            except Exception:  # noqa: BLE001 - try again next time; nothing half-done
                log.exception("retention failed; retrying at the next interval")
            self._due.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._due.wait(), self.interval)
