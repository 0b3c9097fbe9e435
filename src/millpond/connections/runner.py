"""One enabled destination at work: its live pump, redrives, replays, and what they show.

Why a supervisor around the pump: a destination must never stop delivering silently. If
the pump fails on something unexpected (a bug, a full disk), it is restarted from its
last checkpoint after a pause, and the failure is visible in the destination's stats
meanwhile. A new configuration replaces the whole object (the manager stops this one
and starts another), so a running pump never sees its configuration change under it.

Its progress is kept as delivery runs (:class:`~millpond.storage.contracts.RunStore`):
the destination's one ``live`` run (cursor: the seq of the last finished event) and one
``redrive`` run per redrive. What the destination shows as its totals is the sum of
those runs' counters.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections import Counter
from collections.abc import Coroutine, Sequence
from typing import Any, cast

import msgspec

from millpond.connections.config import Runtime, max_retry_after, max_retry_age
from millpond.delivery.batcher import Batcher
from millpond.delivery.dead_log import DeadLetterLog
from millpond.delivery.evaluate import Evaluator
from millpond.delivery.ledger import Ledger
from millpond.delivery.pump import Pump
from millpond.delivery.rate_limit import RateLimiter, batch_size
from millpond.delivery.retry import RetryPolicy
from millpond.delivery.runs import Checkpoint, supervise
from millpond.delivery.screen import Screen
from millpond.delivery.sender import BACKGROUND, Deliverer
from millpond.delivery.slices import LogTail, RowsSource
from millpond.delivery.transport import Transport
from millpond.errors import NotFound
from millpond.storage.contracts import EventLog, RunStore, StorageUnavailable
from millpond.storage.models import (
    DeadLetter,
    DeadLetterState,
    Destination,
    Run,
    RunKind,
    RunState,
    StoredEvent,
)
from millpond.timeutil import iso_to_seconds

log = logging.getLogger("millpond.pumps")

#: Seconds between attempts to load a handed-over redrive's rows while the stores are away.
RESUME_PAUSE = 5.0


def new_run_id(kind: RunKind) -> str:
    return {RunKind.LIVE: "liv_", RunKind.REPLAY: "rpl_", RunKind.REDRIVE: "rdr_"}[kind] \
        + secrets.token_hex(6)


def redrive_run(runs: RunStore, dest_id: str, claimed: list[DeadLetter]) -> Run:
    """The ``redrive`` run of ``claimed`` dead letters, saved ``running``: whichever
    process delivers the destination runs it (:meth:`LiveDestination.resume_redrives`)."""
    return runs.create(Run(new_run_id(RunKind.REDRIVE), dest_id, RunKind.REDRIVE,
                           RunState.RUNNING, {"ids": [r.id for r in claimed]}))


def live_run(runs: RunStore, dest: Destination) -> Run:
    """The destination's live run; one starting after ``connected_seq`` if it has none
    (a destination saved before its run was)."""
    found = runs.list(dest.id, kinds=[RunKind.LIVE])
    if found:
        return found[-1]
    state = RunState.RUNNING if dest.enabled else RunState.PAUSED
    return runs.create(Run(new_run_id(RunKind.LIVE), dest.id, RunKind.LIVE, state,
                           cursor=dest.connected_seq))


def delivery_totals(runs: RunStore, dest_id: str) -> Counter:
    """What a destination delivered: its live run's counters plus its redrives'."""
    totals: Counter = Counter()
    for run in runs.list(dest_id, kinds=[RunKind.LIVE, RunKind.REDRIVE]):
        totals.update(run.counts)
    return totals


def max_in_flight(dest: Destination, rt: Runtime) -> int:
    """The destination's ``rate_limit.max_in_flight``, else its type's default (a
    destination saved before the setting existed)."""
    return int(dest.rate_limit.get("max_in_flight")
               or type(rt.dtype).default_rate_limit.max_in_flight)


def run_cursor(run: Run, dest: Destination) -> int:
    return run.cursor if isinstance(run.cursor, int) else dest.connected_seq


class LiveDestination:
    """The running side of one destination; see the module docstring."""

    def __init__(self, dest: Destination, rt: Runtime, log_: EventLog, runs: RunStore,
                 run: Run, transport: Transport, policy: RetryPolicy,
                 screen: Screen | None = None, *, hand_over: bool = False):
        self.dest = dest
        #: On a cluster: a redrive stopped with the destination stays ``running`` for
        #: the destination's next owner (:meth:`resume_redrives`), not cancelled.
        self.hand_over = hand_over
        self.runtime = rt
        self.log = log_
        self.runs = runs
        self.run = run
        rate = dest.rate_limit
        #: Items per request: the type's limit, but a small part of a second's budget
        #: (see ``rate_limit``), which is also the most the rate limiter saves up.
        self.batch_events = batch_size(rt.dtype.batching.max_events,
                                       rate["events_per_second"],
                                       rate.get("requests_per_second"))
        policy = dataclasses.replace(policy, max_retry_after=max_retry_after(rate),
                                     max_retry_age=max_retry_age(rate))
        # Loader-backed types (warehouse, storage) bring their own transport: their loader.
        own = getattr(rt.dtype, "transport", None)
        #: This destination's own transport (closed with it), or None for the shared one.
        self.own_transport: Transport | None = (
            cast(Transport, own(transport, screen)) if callable(own) else None)  # its loader
        transport = self.own_transport or transport
        self.deliverer = Deliverer(rt.dtype, transport,
                                   RateLimiter(rate["events_per_second"],
                                               rate.get("requests_per_second"),
                                               burst_events=self.batch_events), policy,
                                   name=dest.name, max_in_flight=max_in_flight(dest, rt),
                                   screen=screen)
        self.evaluator = Evaluator(rt.dtype, rt.actions)
        self.totals: Counter = delivery_totals(runs, dest.id)
        #: The cursor as saved with ``totals``: stats show the two together, consistently.
        self.saved_cursor = run_cursor(run, dest)
        self.pump: Pump | None = None
        #: Outlives pump restarts, so its throttle does too.
        self._dead_log = DeadLetterLog(f"destination {dest.name}",
                                       {"destination": dest.name, "activity": "live"})
        self.error: str | None = None
        self._task: asyncio.Task | None = None
        self._redrives: set[asyncio.Task] = set()
        #: The redrive runs started here (a run listed again is not started twice).
        self._redrive_runs: set[str] = set()
        #: Replays running on this destination's deliverer (see ``replay_manager``).
        self._replays: set[asyncio.Task] = set()

    # live pump ---------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name=f"pump-{self.dest.name}")

    def _saved(self, cursor: int, counts: Counter) -> None:
        self.totals.update(counts)
        self.saved_cursor = cursor

    def _added(self, _cursor: int, counts: Counter) -> None:
        self.totals.update(counts)

    def _new_pump(self) -> Pump:
        cursor = run_cursor(self.runs.get(self.run.id), self.dest)
        limits = self.runtime.dtype.batching
        tail = LogTail(self.log, cursor)
        return Pump(tail, self.evaluator, self.deliverer,
                    Batcher(self.batch_events, limits.max_bytes, limits.linger_seconds),
                    Ledger(cursor), Checkpoint(self.runs, self.run, tail, start=cursor),
                    on_saved=self._saved, dead_log=self._dead_log,
                    max_in_flight=self.deliverer.gate.capacity)

    async def _attempt(self) -> None:
        self.pump = self._new_pump()
        await self.pump.run()

    def _failed(self, error: str) -> None:
        self.error = error

    async def _supervise(self) -> None:
        await supervise(RunKind.LIVE, self._attempt, on_error=self._failed,
                        label=f"pump for destination {self.dest.name}")

    async def stop(self) -> None:
        """Stop the live pump and redrives; each saves its progress on the way out."""
        tasks = [t for t in (self._task, *self._redrives, *self._replays) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.own_transport is not None:
            await self.own_transport.aclose()

    def adopt(self, task: asyncio.Task) -> None:
        """Stop ``task`` (a replay) with this destination: it must not outlive the
        deliverer it shares."""
        self._replays.add(task)
        task.add_done_callback(self._replays.discard)

    # redrives ----------------------------------------------------------------------------
    def redrive(self, claimed: list[DeadLetter], events: dict[int, StoredEvent]) -> None:
        """Deliver claimed dead letters again through the *current* actions, in the
        background, behind live traffic, as a ``redrive`` run of their ids. Each row ends
        ``redriven`` once its event finished (sent, skipped or dead-lettered anew)."""
        run = redrive_run(self.runs, self.dest.id, claimed)
        self._launch_redrive(run, self._redrive(run, claimed, events))

    def resume_redrives(self, running: Sequence[Run] | None = None) -> None:
        """Go on with the destination's ``running`` redrives (``running``: those of them
        already read) that were not started here: on a cluster, those of a process that
        died or handed the destination over (its claimed rows are still ``redriving``;
        the ones it finished are ``redriven``, so each event is sent again only if its
        outcome was not saved), and those another process was asked for
        (``PumpManager.redrive``). Single-process servers cancel theirs at start
        (``PumpManager.start(recover=True)``), so there is nothing to resume there."""
        if running is None:
            running = self.runs.list(self.dest.id, kinds=[RunKind.REDRIVE],
                                     states=[RunState.RUNNING])
        for run in running:
            if run.id not in self._redrive_runs:
                self._launch_redrive(run, self._resume_redrive(run))

    async def _resume_redrive(self, run: Run) -> None:
        ids = set(run.spec.get("ids", ()))
        while True:  # the stores may be away for a while (a node restarting): wait them out
            try:
                claimed, events = await self._redrive_rows(ids)
                break
            except StorageUnavailable as exc:
                log.warning("redrive %s of destination %s waits for the stores: %s",
                            run.id, self.dest.name, exc)
                await asyncio.sleep(RESUME_PAUSE)
        log.info("redrive %s continues for destination %s: %d of %d dead letters left",
                 run.id, self.dest.name, len(claimed), len(ids))
        await self._redrive(run, claimed, events)

    async def _redrive_rows(self, ids: set[int]
                            ) -> tuple[list[DeadLetter], dict[int, StoredEvent]]:
        """The rows of ``ids`` still claimed, and their events; a row whose event the log
        lost (retention) is put back to ``dead``, as a new redrive would refuse it."""
        claimed = await asyncio.to_thread(self._still_redriving, ids)
        events: dict[int, StoredEvent] = {}
        missing = []
        for row in claimed:
            if row.seq not in events:
                found = await self.log.get(row.seq)
                if found is None:
                    missing.append(row.id)
                    continue
                events[row.seq] = found
        if missing:
            await asyncio.to_thread(self.runs.release_dead_letters, missing)
        return [r for r in claimed if r.seq in events], events

    def _still_redriving(self, ids: set[int]) -> list[DeadLetter]:
        rows: list[DeadLetter] = []
        after = 0
        while True:
            page = self.runs.dead_letters(self.dest.id, state=DeadLetterState.REDRIVING,
                                          after_id=after, limit=1000)
            rows += [r for r in page if r.id in ids]
            if len(page) < 1000:
                return sorted(rows, key=lambda r: (r.seq, r.id))
            after = page[-1].id

    def _launch_redrive(self, run: Run, work: Coroutine[Any, Any, None]) -> None:
        self._redrive_runs.add(run.id)
        task = asyncio.create_task(work, name=f"redrive-{self.dest.name}")
        self._redrives.add(task)
        task.add_done_callback(self._redrives.discard)

    async def _redrive(self, run: Run, claimed: list[DeadLetter],
                       events: dict[int, StoredEvent]) -> None:
        by_seq: dict[int, list[DeadLetter]] = {}
        for row in claimed:
            by_seq.setdefault(row.seq, []).append(row)
        rows = [events[seq] for seq in sorted(by_seq)]
        only = {seq: frozenset(r.action for r in dls) for seq, dls in by_seq.items()}
        ids_by_seq = {seq: [r.id for r in dls] for seq, dls in by_seq.items()}
        # Dead letters of runs the destination's totals add up (live, redrives) move to
        # their final outcome when settled; a replay's stay in its report.
        recount = frozenset(rid for rid in {r.run_id for r in claimed}
                            if self._counted(rid))
        source = RowsSource(rows)
        persist = Checkpoint(self.runs, run, source, start=0, redriven=by_seq,
                             recount=recount)
        done = persist.finished

        limits = self.runtime.dtype.batching
        pump = Pump(source, self.evaluator, self.deliverer,
                    Batcher(self.batch_events, limits.max_bytes, limits.linger_seconds),
                    Ledger(0, keep_finished=True), persist, priority=BACKGROUND, only=only,
                    on_saved=self._added, max_in_flight=self.deliverer.gate.capacity,
                    dead_log=DeadLetterLog(f"redrive of destination {self.dest.name}",
                                           {"destination": self.dest.name,
                                            "activity": "redrive"}))
        handed_over = False
        try:
            await supervise(RunKind.REDRIVE, pump.run, on_error=lambda _e: None,
                            label=f"redrive {run.id}")
        except asyncio.CancelledError:
            # Stopped with the destination: on a cluster the destination's next owner
            # (maybe this process again, after a configuration change) goes on with it.
            handed_over = self.hand_over
            raise
        finally:
            if not handed_over:
                unfinished = [i for seq, ids in ids_by_seq.items() if seq not in done
                              for i in ids]
                if unfinished:
                    await asyncio.to_thread(self.runs.release_dead_letters, unfinished)
                state = RunState.CANCELLED if unfinished else RunState.COMPLETED
                await asyncio.to_thread(self.runs.set_state, run.id, state)

    def _counted(self, run_id: str) -> bool:
        try:
            return self.runs.get(run_id).kind in (RunKind.LIVE, RunKind.REDRIVE)
        except NotFound:
            return False

    # visibility --------------------------------------------------------------------------
    def position(self) -> tuple[int, float | None]:
        """``(saved cursor, received time of the oldest unfinished event or None)``."""
        pump = self.pump
        oldest = None if pump is None else pump.ledger.oldest_open()
        return self.saved_cursor, None if oldest is None else iso_to_seconds(oldest[1])

    def state(self) -> dict:
        st = self.deliverer.state
        now = time.time()
        pump = self.pump
        unavailable = pump.unavailable if pump is not None else None
        if unavailable:  # nothing moves until progress can be saved again
            state = "error"
        else:
            state = "failing" if st.failing else "retrying" if st.retrying \
                else ("error" if self.error else "running")
        return {
            "state": state,
            "last_error": unavailable or st.last_error or self.error,
            "last_error_at": st.last_error_at,
            "next_attempt_in": max(0.0, st.next_attempt_at - now)
            if st.retrying and st.next_attempt_at else None,
            "requests": st.requests,
            # requests on the wire now, of at most ``max_in_flight``; events/s sent lately
            "in_flight": self.deliverer.on_wire,
            "max_in_flight": self.deliverer.gate.capacity,
            "sent_per_second": round(self.deliverer.meter.rate(), 1),
            "redrives_running": len(self._redrives),
            "max_retry_after": self.deliverer.policy.max_retry_after,
            "max_retry_age": self.deliverer.policy.max_retry_age,
            # While retrying, the owner may end the wait (``retry-now``).
            "retry_now": st.retrying,
            "retried_now": st.retried_now,
        }


async def head_received(log_: EventLog, cursor: int) -> float | None:
    """Received time of the first event after ``cursor`` (the oldest undelivered one)."""
    rows = await log_.read(cursor, 1)
    if not rows:
        return None
    try:
        return iso_to_seconds(msgspec.json.decode(rows[0].body).get("receivedAt"))
    except msgspec.DecodeError:
        return None
