"""Replays' front door: plan or refuse, preview, start, pause, resume, cancel, report.

Why replays hang off the destination's running side: a replay must share the live
pump's :class:`~millpond.delivery.sender.Deliverer` (one rate budget, live first). So the
:class:`~millpond.connections.service.PumpManager` calls :meth:`ReplayManager.attach` each time
it launches a destination, which (re)starts that destination's ``running`` replays from
their saved cursors: at server start (a crash or restart resumes by itself) and after a
configuration change. Stopping the destination stops its replays with a checkpoint and
leaves them ``running`` in the run store; ``paused`` ones stay paused. On a cluster, a
process that does not deliver the destination saves what it is asked (a start, a pause,
a resume, a cancel) in the run store, and the one that does acts on it at its next lease
renewal (:meth:`ReplayManager.follow`).

A replay is a delivery run of kind ``replay``: its plan in ``spec``, its cursor a
:class:`~millpond.storage.models.WindowCursor`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

from millpond.connections import config
from millpond.connections.runner import LiveDestination, new_run_id
from millpond.connections.stats import summarize
from millpond.delivery import runs as run_states
from millpond.delivery.slices import close_scan
from millpond.errors import BadRequest, Conflict, NotFound
from millpond.replays.plan import plan, plan_window
from millpond.replays.preview import PreviewJob, run_preview
from millpond.replays.runner import ReplayRunner
from millpond.sources.service import SourceService
from millpond.storage.contracts import EventIndex, RunStore
from millpond.storage.models import (
    Destination,
    Run,
    RunKind,
    RunState,
    Window,
    WindowCursor,
)
from millpond.timeutil import format_ms, human_duration
from millpond.workers import WorkerPool

#: States in which a replay still owns its destination's replay slot.
ACTIVE = tuple(run_states.ACTIVE)

log = logging.getLogger("millpond.replays")

#: How a replay paused by its destination being disabled says so; :meth:`ReplayManager.
#: release` resumes exactly these (not the ones their owner paused).
DISABLED = "is disabled; the replay resumes when it is enabled again"


class ReplayManager:
    """Owns the replay runs and the running replay tasks; see the module docstring."""

    def __init__(self, pumps, sources: SourceService, runs: RunStore, index: EventIndex):
        self.pumps = pumps
        self.sources = sources
        self.runs = runs
        self.index = index
        self._runners: dict[str, tuple[ReplayRunner, asyncio.Task]] = {}
        #: When each runner of :attr:`_runners` started (:meth:`follow`).
        self._started_at: dict[str, float] = {}
        self._lock = asyncio.Lock()
        self._workers = WorkerPool(preload=["millpond.replays.preview"])
        pumps.replays = self

    def close(self) -> None:
        """Stop the preview's worker processes (the server is stopping)."""
        self._workers.close()

    def _active_for(self, destination_id: str) -> Run | None:
        found = self.runs.list(destination_id, kinds=[RunKind.REPLAY], states=ACTIVE)
        return found[0] if found else None

    # requests ------------------------------------------------------------------------------
    async def create(self, body: Any) -> dict:
        """Preview (``dry_run``) or start a replay; refusals raise with their reason.
        ``body``: a :class:`~millpond.api.models.ReplayRequest` as plain values."""
        ref = body["destination"]
        async with self._lock:
            dest = self.pumps.destinations.get(ref)
            cls = config.destination_type(dest.type)
            active = self._active_for(dest.id)
            p = plan(body, dest, cls, self.sources.origins(), active.id if active else None)
            await self._real_bounds(p, body, dest.connected_at)
            p["out_of_retention"] = await self._out_of_retention(p)
            live = self.pumps.live(dest.id)
            elsewhere = live is None and self.pumps.elsewhere(dest)
            if live is None and not elsewhere:
                raise Conflict(f"destination {dest.name} is not running (its configuration "
                               "cannot start); fix it before replaying", field="destination")
            if not p["dry_run"]:
                return await self._start_run(p, dest, live, elsewhere)
        # A dry run reads the whole window (seconds at millions of events): not while
        # holding the lock every start waits for.
        return await self._preview(p, dest)

    async def _start_run(self, p: dict, dest: Destination, live: LiveDestination | None,
                         elsewhere: bool) -> dict:
        """Create and start the replay ``p`` plans (under the lock of :meth:`create`)."""
        count = await self.index.count(plan_window(p))
        if not count:
            raise BadRequest(self._empty_reason(p), field="from")
        p["estimate_events"] = count
        replay = self.runs.create(Run(new_run_id(RunKind.REPLAY), dest.id, RunKind.REPLAY,
                                      RunState.RUNNING, p))
        if live is not None:
            self._start(replay, live)
        log.info("replay %s started for destination %s%s: %s to %s, about %s events at up "
                 "to %s events/s", replay.id, dest.name,
                 " (by the process that delivers it)" if elsewhere else "", p["from"],
                 p["to"] or "now", f"{count:,}", f"{p['rate']:,g}",
                 extra=_fields(replay, phase="started", window_from=p["from"],
                               window_to=p["to"], estimate_events=count, rate=p["rate"]))
        return self.to_dict(replay)

    async def _preview(self, p: dict, dest: Destination) -> dict:
        job = PreviewJob(p, dest.type, dest.settings, dest.actions)
        result = await run_preview(self.index, job, p["source_names"], self._workers)
        if not result["events"]:
            excluded = sum(e["events"] for e in result["excluded"])
            extra = f" ({excluded:,} events of non-replayable sources excluded)" \
                if excluded else ""
            raise BadRequest(self._empty_reason(p) + extra, field="from")
        return {"id": None, "state": "planned", "dry_run": True, **self._public_plan(p),
                "estimate": {k: result["estimate"][k] for k in ("events", "seconds", "human")},
                "preview": result}

    async def _real_bounds(self, p: dict, body: dict, connected_at: float) -> None:
        """Show a default window as what it is: from the oldest event in it (not the
        epoch) to the moment the destination was connected (not "now": arrival after
        it is live delivery's), unless ``include_live``. Only what is shown changes; the
        window itself (``ts_from``, ``ts_to``, ``max_seq``) stays as planned."""
        if body.get("from") is None:
            scan = self.index.scan(plan_window(p), chunk=1)
            try:
                first = await anext(scan, None)
            finally:
                await close_scan(scan)
            if first:
                p["from"] = format_ms(first[0].ts_ms)
        if body.get("to") is None and not p["include_live"]:
            p["to"] = format_ms(int(connected_at * 1000))

    async def _out_of_retention(self, p: dict) -> list[dict]:
        """What retention deleted of the window, per source: a replay says so rather than
        silently finding less (or nothing)."""
        window = plan_window(p)
        gone = await self.pumps.log.expired(Window(window.ts_from, window.ts_to,
                                                   source_ids=tuple(p["sources"])))
        kept = {s.id: s.retention for s in self.sources.origins()}
        out = []
        for e in gone:
            name = p["source_names"].get(e.source_id, e.source_id)
            before = format_ms(e.before_ms)
            out.append({"source": e.source_id, "name": name, "events": e.events,
                        "retention": kept.get(e.source_id, "forever"), "before": before,
                        "reason": f"source {name} keeps events "
                                  f"{kept.get(e.source_id, 'forever')} after arrival: up to "
                                  f"{e.events:,} events of this window arrived before "
                                  f"{before} and were deleted by retention"})
        return out

    @staticmethod
    def _empty_reason(p: dict) -> str:
        to = p["to"] or "now"
        live = "" if p["include_live"] else " that arrived before the destination was connected"
        gone = "".join(f"; {e['reason']}" for e in p.get("out_of_retention", ()))
        return f"empty window: no events from replayable sources between {p['from']} and {to}" \
               f"{live}{gone}"

    def _get(self, replay_id: str) -> Run:
        try:
            run: Run | None = self.runs.get(replay_id)
        except NotFound:
            run = None
        if run is None or run.kind != RunKind.REPLAY:
            raise NotFound(f"no replay {replay_id!r}", field="id")
        return run

    def get(self, replay_id: str) -> dict:
        return self.to_dict(self._get(replay_id))

    def list(self, destination: str | None = None) -> list[dict]:
        dest_id = self.pumps.destinations.get(destination).id if destination else None
        return [self.to_dict(r) for r in self.runs.list(dest_id, kinds=[RunKind.REPLAY])]

    async def pause(self, replay_id: str) -> dict:
        replay = self._get(replay_id)
        run_states.check(replay, RunState.PAUSED, name="replay")
        await self._stop(replay_id)
        replay = self._get(replay_id)
        if replay.state == RunState.RUNNING:
            self.runs.set_state(replay_id, RunState.PAUSED)
            log.info("replay %s paused after %s of about %s events", replay_id,
                     f"{replay.scanned:,}", f"{replay.spec.get('estimate_events', 0):,}",
                     extra=_fields(replay, phase="paused", scanned=replay.scanned))
        return self.get(replay_id)

    async def resume(self, replay_id: str) -> dict:
        replay = self._get(replay_id)
        if replay.state == RunState.PLANNED or not run_states.allowed(replay.state,
                                                                       RunState.RUNNING):
            raise Conflict(f"replay {replay_id} is {replay.state}; only a paused or failed "
                           "replay can be resumed", field="state")
        other = self._active_for(replay.destination_id)
        if other is not None and other.id != replay_id:
            raise Conflict(f"replay {other.id} is already active for this destination",
                           field="state")
        live = self.pumps.live(replay.destination_id)
        if live is None and not self.pumps.elsewhere(
                self.pumps.destinations.get(replay.destination_id)):
            raise Conflict("the destination is disabled or cannot start; enable it to resume",
                           field="destination")
        self.runs.set_state(replay_id, RunState.RUNNING, error="")
        if live is not None:  # else the process that delivers it starts it (follow)
            self._start(self._get(replay_id), live)
        log.info("replay %s resumed (was %s) after %s of about %s events", replay_id,
                 replay.state, f"{replay.scanned:,}",
                 f"{replay.spec.get('estimate_events', 0):,}",
                 extra=_fields(replay, phase="resumed", scanned=replay.scanned))
        return self.get(replay_id)

    async def cancel(self, replay_id: str) -> dict:
        replay = self._get(replay_id)
        if replay.state not in ACTIVE:
            raise Conflict(f"replay {replay_id} is already {replay.state}", field="state")
        run_states.check(replay, RunState.CANCELLED, name="replay")
        await self._stop(replay_id)
        replay = self._get(replay_id)
        if replay.state in ACTIVE:
            report = self.report(replay, "cancelled")
            self.runs.set_state(replay_id, RunState.CANCELLED, report=report)
            _log_report(replay, report)
        return self.get(replay_id)

    # running -------------------------------------------------------------------------------
    def attach(self, live: LiveDestination) -> None:
        """Start (again) every ``running`` replay of a destination that just launched."""
        for replay in self.runs.list(live.dest.id, kinds=[RunKind.REPLAY],
                                     states=[RunState.RUNNING]):
            if replay.id not in self._runners:
                self._start(replay, live)
                log.info("replay %s continues from its checkpoint for destination %s (%s of "
                         "about %s events scanned)", replay.id, live.dest.name,
                         f"{replay.scanned:,}", f"{replay.spec.get('estimate_events', 0):,}",
                         extra=_fields(replay, phase="continued", scanned=replay.scanned))

    async def follow(self, lives: Mapping[str, LiveDestination]) -> None:
        """On a cluster, at each lease renewal of the process that delivers ``lives``:
        what was asked of another process (the console behind a load balancer reaches
        either) takes effect here. A replay started or resumed there (saved ``running``)
        starts; one paused or cancelled there stops, with a checkpoint, and a cancelled
        one's report is made again from the counts that checkpoint saved."""
        read_at = time.monotonic()
        active = {r.id: r for r in await asyncio.to_thread(
            self.runs.list, kinds=[RunKind.REPLAY], states=ACTIVE)}
        for rid in list(self._runners):
            if self._started_at.get(rid, 0.0) > read_at:
                continue  # started here after the read: the read may predate it
            found = active.get(rid)
            if found is not None and found.state == RunState.RUNNING:
                continue
            await self._stop(rid)
            try:
                replay = self._get(rid)
            except NotFound:  # gone with its destination meanwhile
                continue
            log.info("replay %s stopped here: it was %s through another process", rid,
                     replay.state, extra=_fields(replay, phase=str(replay.state)))
            if replay.state == RunState.CANCELLED:
                self.runs.set_state(rid, RunState.CANCELLED,
                                    report=self.report(replay, "cancelled"))
        for replay in active.values():
            live = lives.get(replay.destination_id)
            if replay.state == RunState.RUNNING and replay.id not in self._runners \
                    and live is not None:
                self._start(replay, live)
                log.info("replay %s started for destination %s, as asked of another "
                         "process", replay.id, live.dest.name,
                         extra=_fields(replay, phase="continued", scanned=replay.scanned))

    def hold(self, dest_id: str, name: str) -> None:
        """The destination was disabled (its replays' tasks already stopped): its
        ``running`` replays become ``paused`` with the reason, not silently stuck."""
        for replay in self.runs.list(dest_id, kinds=[RunKind.REPLAY],
                                     states=[RunState.RUNNING]):
            run_states.check(replay, RunState.PAUSED, name="replay")
            self.runs.set_state(replay.id, RunState.PAUSED, error=f"destination {name} {DISABLED}")
            log.info("replay %s paused: destination %s is disabled", replay.id, name,
                     extra=_fields(replay, phase="paused", reason="destination disabled"))

    def release(self, dest_id: str) -> None:
        """The destination is being enabled: the replays :meth:`hold` paused run again
        (the launch that follows starts them from their cursors)."""
        for replay in self.runs.list(dest_id, kinds=[RunKind.REPLAY],
                                     states=[RunState.PAUSED]):
            if DISABLED in (replay.error or ""):
                self.runs.set_state(replay.id, RunState.RUNNING, error="")

    def _start(self, replay: Run, live: LiveDestination) -> None:
        rt = live.runtime
        runner = ReplayRunner(replay, self.runs, self.index, live.deliverer,
                              live.evaluator, rt.dtype.batching,
                              float(live.dest.rate_limit["events_per_second"]))
        task = asyncio.create_task(self._run(runner), name=f"replay-{replay.id}")
        self._runners[replay.id] = (runner, task)
        self._started_at[replay.id] = time.monotonic()
        live.adopt(task)

    async def _run(self, runner: ReplayRunner) -> None:
        rid = runner.replay.id
        try:
            error = await run_states.supervise(
                RunKind.REPLAY, runner.run, label=f"replay {rid}",
                on_error=lambda e: log.exception(
                    "replay %s failed (it can be resumed): %s", rid, e,
                    extra=_fields(runner.replay, phase="failed", error=e)))
            if error is not None:  # a replay is not restarted: it waits, failed, for resume
                self.runs.set_state(rid, RunState.FAILED, error=error)
                return
        finally:
            current = self._runners.get(rid)
            if current is not None and current[0] is runner:
                del self._runners[rid]
                self._started_at.pop(rid, None)
        replay = self._get(rid)
        if replay.state == RunState.RUNNING:
            report = self.report(replay, "completed")
            self.runs.set_state(rid, RunState.COMPLETED, report=report)
            _log_report(replay, report)

    def running(self) -> list[str]:
        """Ids of the replays running in this process (for the server's "ready" line)."""
        return list(self._runners)

    async def _stop(self, replay_id: str) -> None:
        entry = self._runners.pop(replay_id, None)
        self._started_at.pop(replay_id, None)
        if entry is not None:
            entry[1].cancel()
            await asyncio.gather(entry[1], return_exceptions=True)

    # showing -------------------------------------------------------------------------------
    @staticmethod
    def _public_plan(p: dict) -> dict:
        return {"destination": p["destination"], "destination_name": p["destination_name"],
                "sources": [{"id": s, "name": p["source_names"].get(s, s)}
                            for s in p["sources"]],
                "excluded_sources": p["excluded_sources"],
                "window": {"from": p["from"], "to": p["to"], "max_seq": p["max_seq"]},
                "filter": p["filter"], "include_live": p["include_live"], "rate": p["rate"],
                "out_of_retention": p.get("out_of_retention", [])}

    def to_dict(self, replay: Run) -> dict:
        p = replay.spec
        totals = summarize(Counter(replay.counts))
        events = p.get("estimate_events", 0)
        rate = p["rate"]
        entry = self._runners.get(replay.id)
        current = entry[0].current_rate() if entry is not None else 0.0
        eta = None
        if replay.state == RunState.RUNNING:
            ratio = totals["sent"] / replay.scanned if replay.scanned else 1.0
            remaining = max(0, events - replay.scanned) * ratio
            eta = round(remaining / (current if current > 0 else rate), 1)
        # A running replay that cannot save its progress (a full disk) holds: show it.
        unavailable = entry[0].pump.unavailable if entry is not None else None
        state = "error" if unavailable and replay.state == RunState.RUNNING \
            else str(replay.state)
        return {
            "id": replay.id, "state": state, **self._public_plan(p),
            "destination_deleted": not self._exists(replay.destination_id),
            "reason": (replay.error or None) if replay.state in (
                RunState.PAUSED, RunState.CANCELLED, RunState.FAILED) else None,
            "progress": {"scanned": replay.scanned, "sent": totals["sent"],
                         "skipped": totals["skipped"],
                         "dead_lettered": totals["dead_lettered"],
                         "retried": totals["retried"]},
            "estimate": {"events": events, "seconds": round(events / rate, 1) if rate else None},
            "current_rate": round(current, 1), "eta_seconds": eta,
            "cursor": {"ts": replay.cursor.ts, "seq": replay.cursor.seq}
            if isinstance(replay.cursor, WindowCursor) else None,
            "error": unavailable or ((replay.error or None)
                                     if replay.state == RunState.FAILED else None),
            "report": replay.report,
            "created_at": replay.created_at, "finished_at": replay.finished_at,
        }

    def _exists(self, dest_id: str) -> bool:
        try:
            self.pumps.destinations.get(dest_id)
        except NotFound:
            return False
        return True

    def report(self, replay: Run, outcome: str) -> dict:
        """The final account of what went where, as JSON with a human ``summary``."""
        p = replay.spec
        totals = summarize(Counter(replay.counts))
        elapsed = max(0.0, time.time() - replay.created_at)
        names = ", ".join(p["source_names"].values())
        skipped = "; ".join(f"{r}: {n:,}" for r, n in sorted(totals["skipped"].items(),
                                                               key=lambda kv: -kv[1]))
        summary = (
            f"Replay {replay.id} {outcome}: {replay.scanned:,} events scanned from {names} "
            f"({p['from']} to {p['to'] or 'now'}) for {p['destination_name']}: "
            f"{totals['sent']:,} sent, {sum(totals['skipped'].values()):,} skipped"
            f"{f' ({skipped})' if skipped else ''}, {totals['dead_lettered']:,} dead-lettered, "
            f"in {human_duration(elapsed)}.")
        if p["excluded_sources"]:
            summary += " Excluded: " + "; ".join(e["reason"] for e in p["excluded_sources"])
        return {"outcome": outcome, "scanned": replay.scanned, "sent": totals["sent"],
                "skipped": totals["skipped"], "dead_lettered": totals["dead_lettered"],
                "retried": totals["retried"], "actions": totals["actions"],
                "excluded_sources": p["excluded_sources"],
                "elapsed_seconds": round(elapsed, 3),
                "average_rate": round(totals["sent"] / elapsed, 1) if elapsed else None,
                "summary": summary}


def _fields(replay: Run, **more: Any) -> dict:
    """A replay's structured log fields (``extra=``): ids first, then ``more``."""
    return {"replay_id": replay.id, "destination": replay.spec.get("destination_name"),
            "destination_id": replay.destination_id, **more}


def _log_report(replay: Run, report: dict) -> None:
    """The final account as one log line: the report's summary plus the average rate."""
    rate = report["average_rate"]
    skipped = sum(report["skipped"].values())
    log.info("%s%s", report["summary"],
             f" Average {rate:,.1f} events/s." if rate is not None else "",
             extra=_fields(replay, phase=report["outcome"], scanned=report["scanned"],
                           sent=report["sent"], skipped=skipped,
                           dead_lettered=report["dead_lettered"],
                           retried=report["retried"],
                           elapsed_seconds=report["elapsed_seconds"],
                           average_rate=rate))
