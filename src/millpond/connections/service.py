"""The destinations layer's front door: configuration changes, live pumps, redrives, stats.

Why every change goes through here: saving a destination and (re)starting its pump must
happen together, or the owner would see one configuration and the pump run another.
The API calls these methods; each validates fully, writes the destination store (and its
live run), then replaces the destination's running side
(:class:`~millpond.connections.runner.LiveDestination`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from millpond.connections import config, retrying
from millpond.connections.runner import (
    LiveDestination,
    delivery_totals,
    head_received,
    live_run,
    new_run_id,
    redrive_run,
    run_cursor,
)
from millpond.connections.stats import summarize
from millpond.delivery.retry import RetryPolicy
from millpond.delivery.screen import Screen
from millpond.delivery.transport import DEFAULT_TIMEOUT, HttpTransport, Transport
from millpond.errors import BadRequest, Conflict
from millpond.storage.contracts import DestinationStore, EventLog, LoadStatsStore, RunStore
from millpond.storage.models import Destination, Lease, Run, RunKind, RunState, StoredEvent

if TYPE_CHECKING:
    from millpond.replays.service import ReplayManager

log = logging.getLogger("millpond.pumps")


class Cluster(Protocol):
    """What a process of a scale-out cluster knows of the destinations another process
    delivers (:class:`millpond.app.membership.Membership`): blocking calls."""

    #: Seconds between two renewals of a lease: how soon its owner acts on a request.
    renew_seconds: float

    def lease_of(self, dest_id: str) -> Lease | None:
        """The destination's unexpired lease, with what its owner last said of it."""
        ...

    def ask_retry(self, dest_id: str) -> bool:
        """Ask the destination's owner to end its wait for a next attempt now."""
        ...


class PumpManager:
    """Runs one :class:`LiveDestination` per enabled destination of ``destinations``."""

    def __init__(self, event_log: EventLog, destinations: DestinationStore, runs: RunStore,
                 *, load_stats: LoadStatsStore | None = None,
                 transport: Transport | None = None, policy: RetryPolicy | None = None,
                 timeout: float = DEFAULT_TIMEOUT, screen: Screen | None = None):
        self.log = event_log
        #: Whose events no run may send (regulations); every destination's deliverer asks.
        self.screen = screen
        self.destinations = destinations
        self.runs = runs
        #: Where warehouse / storage destinations keep their per-table totals (None: in
        #: the destination object, for this process only).
        self.load_stats = load_stats
        self.policy = policy or RetryPolicy()
        #: Seconds per vendor request, for the transport made when none is given.
        self.timeout = timeout
        self._transport = transport
        self._live: dict[str, LiveDestination] = {}
        self._lock = asyncio.Lock()
        self._started = False
        #: Set by :class:`~millpond.replays.service.ReplayManager` when it is wired.
        self.replays: ReplayManager | None = None
        #: The destinations this process may deliver (ids), when processes share them
        #: through leases (:mod:`millpond.app.membership`); None: every one.
        self.owned: set[str] | None = None
        #: Set by the cluster membership: the destinations the other processes deliver.
        self.cluster: Cluster | None = None

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            self._transport = HttpTransport(self.timeout)
        return self._transport

    # lifecycle ---------------------------------------------------------------------------
    async def start(self, *, recover: bool = True) -> None:
        """Start a pump for every enabled destination (from its saved cursor). ``recover``:
        redrives left running are this process's own, interrupted by its last stop (not
        on a cluster, where another process may be running them)."""
        if recover:
            recovered = self.runs.recover_dead_letters()
            if recovered:
                log.info("%d dead letters were being redriven at shutdown; back to dead",
                         recovered)
            for run in self.runs.list(kinds=[RunKind.REDRIVE], states=[RunState.RUNNING]):
                self.runs.set_state(run.id, RunState.CANCELLED,
                                    error="interrupted by a restart")
        self._started = True
        for dest in self.destinations.list():
            if dest.enabled:
                self._launch(dest)

    async def stop(self) -> None:
        self._started = False
        live, self._live = list(self._live.values()), {}
        await asyncio.gather(*(d.stop() for d in live), return_exceptions=True)
        if self._transport is not None:
            await self._transport.aclose()
            self._transport = None

    def _launch(self, dest: Destination) -> None:
        if self.owned is not None and dest.id not in self.owned:
            return  # another process's lease; the lease keeper launches it if it comes here
        try:
            rt = config.runtime(dest.type, dest.settings, dest.actions)
        except BadRequest as exc:  # saved before a catalog change made it invalid
            log.error("destination %s cannot start: %s", dest.name, exc.message)
            return
        loads = getattr(rt.dtype, "stats", None)
        if loads is not None and self.load_stats is not None:
            loads.attach(self.load_stats, dest.id)  # per-table totals that survive restarts
        live = LiveDestination(dest, rt, self.log, self.runs, live_run(self.runs, dest),
                               self.transport, self.policy, self.screen,
                               hand_over=self.owned is not None)
        self._live[dest.id] = live
        live.start()
        live.resume_redrives()
        if self.replays is not None:
            self.replays.attach(live)  # resumes its running replays from their cursors

    async def _restart(self, dest: Destination) -> None:
        old = self._live.pop(dest.id, None)
        if old is not None:
            await old.stop()
        if dest.enabled and self._started:
            self._launch(dest)

    async def sync(self, owned: set[str]) -> None:
        """Run exactly the enabled destinations of ``owned`` (the leases this process
        holds), each on its saved configuration: start the newly owned, stop the lost
        (each checkpoints on the way out), restart the ones another process changed."""
        self.owned = set(owned)
        if not self._started:
            return
        async with self._lock:
            saved = {d.id: d for d in await asyncio.to_thread(self.destinations.list)}
            for dest_id, live in list(self._live.items()):
                dest = saved.get(dest_id)
                if dest is None or not dest.enabled or dest_id not in self.owned:
                    await self._live.pop(dest_id).stop()
                elif dest.updated_at != live.dest.updated_at:
                    await self._restart(dest)
            for dest_id in self.owned - set(self._live):
                dest = saved.get(dest_id)
                if dest is not None and dest.enabled:
                    self._launch(dest)
            if self._live:  # redrives other processes were asked for (:meth:`redrive`)
                running = await asyncio.to_thread(
                    self.runs.list, kinds=[RunKind.REDRIVE], states=[RunState.RUNNING])
                for dest_id, live in self._live.items():
                    live.resume_redrives([r for r in running if r.destination_id == dest_id])
            if self.replays is not None:  # replays asked of other processes too
                await self.replays.follow(self._live)

    # configuration -----------------------------------------------------------------------
    async def create(self, body: dict[str, Any]) -> Destination:
        """Validate and save a new destination; its live pump starts after the log's
        current tail (replays cover what came before). ``body``: a
        :class:`~millpond.api.models.DestinationCreate` as plain values (its shape is
        checked; what depends on the type is checked here)."""
        name = body["name"]
        cls = config.destination_type(body.get("type"))
        settings = config.parse_settings(cls, body.get("settings"))
        rate = config.rate_limit(body.get("rate_limit"), cls)
        actions = config.actions(body.get("actions"), cls)
        enabled = body.get("enabled", True)
        await config.check_connection(cls, settings)
        # Warehouses and storage load the whole log on their first sync (they are not
        # replayable); every other type starts after the log's current tail.
        whole_log = getattr(cls, "history_from_start", False)
        connected = 0 if whole_log else self.log.last_seq()
        async with self._lock:
            now = time.time()
            dest = self.destinations.create(Destination(
                "dst_" + secrets.token_hex(6), name.strip(), cls.name,
                dict(body.get("settings") or {}), rate, actions, enabled, now,
                connected, now))
            self.runs.create(Run(new_run_id(RunKind.LIVE), dest.id, RunKind.LIVE,
                                 RunState.RUNNING if enabled else RunState.PAUSED,
                                 cursor=dest.connected_seq))
            log.info("destination %s created (%s, %s, %s); %s", dest.name, dest.id, dest.type,
                     "enabled" if enabled else "disabled",
                     "its first sync loads the whole log" if whole_log else
                     f"delivering the events after seq {connected}",
                     extra={"destination": dest.name, "destination_id": dest.id,
                            "phase": "created"})
            await self._restart(dest)
        return dest

    async def update(self, ref: str, body: dict[str, Any]) -> Destination:
        """Change any of name, settings, rate_limit, actions (``null``: the presets) and
        enabled. The type cannot change: create another destination instead. ``body``: a
        :class:`~millpond.api.models.DestinationPatch` as plain values (fields given only)."""
        async with self._lock:
            dest = self.destinations.get(ref)
            if "type" in body and body["type"] != dest.type:
                raise Conflict("a destination's type cannot change; create a new destination",
                               field="type")
            cls = config.destination_type(dest.type)
            changes: dict[str, Any] = {}
            if "name" in body:
                changes["name"] = body["name"].strip()
            if "settings" in body:
                settings = config.keep_masked(body["settings"] or {}, dest.settings, cls)
                parsed = config.parse_settings(cls, settings)
                if settings != dest.settings:
                    await config.check_connection(cls, parsed)
                    try:
                        before = config.parse_settings(cls, dest.settings)
                    except BadRequest:  # saved before a catalog change made them invalid
                        before = None
                    if before is not None:
                        await config.check_move(cls, before, parsed,
                                                run_cursor(live_run(self.runs, dest), dest))
                changes["settings"] = dict(settings)
            if "rate_limit" in body:
                merged = {**dest.rate_limit, **(body["rate_limit"] or {})}
                changes["rate_limit"] = config.rate_limit(merged, cls)
            if "actions" in body:
                changes["actions"] = config.actions(body["actions"], cls)
            if "enabled" in body:
                changes["enabled"] = body["enabled"]
            dest = self.destinations.update(msgspec.structs.replace(
                dest, **changes, updated_at=time.time()))
            log.info("destination %s changed: %s", dest.name, ", ".join(
                f"{k} ({'enabled' if v else 'disabled'})" if k == "enabled" else k
                for k, v in changes.items()),
                extra={"destination": dest.name, "destination_id": dest.id, "phase": "changed"})
            if "enabled" in changes:
                self.runs.set_state(live_run(self.runs, dest).id,
                                    RunState.RUNNING if dest.enabled else RunState.PAUSED)
                if dest.enabled and self.replays is not None:
                    self.replays.release(dest.id)
            await self._restart(dest)
            if not dest.enabled and self.replays is not None:
                self.replays.hold(dest.id, dest.name)
        return dest

    async def set_enabled(self, ref: str, enabled: bool) -> Destination:
        return await self.update(ref, {"enabled": enabled})

    async def delete(self, ref: str) -> Destination:
        """Stop delivering and forget the destination (the events stay in the log; its
        runs and dead letters stay in the run store, its unfinished runs cancelled)."""
        async with self._lock:
            dest = self.destinations.get(ref)
            old = self._live.pop(dest.id, None)
            if old is not None:
                await old.stop()
            self.destinations.delete(dest.id)
            log.info("destination %s deleted (%s); its replays' history stays readable",
                     dest.name, dest.id,
                     extra={"destination": dest.name, "destination_id": dest.id,
                            "phase": "deleted"})
            if self.load_stats is not None:
                self.load_stats.forget(dest.id)
            active = (RunState.PLANNED, RunState.RUNNING, RunState.PAUSED)
            for run in self.runs.list(dest.id, states=active):
                self.runs.set_state(run.id, RunState.CANCELLED, error="destination deleted")
                if run.kind == RunKind.REDRIVE:  # a cluster's handed-over redrive
                    self.runs.release_dead_letters(run.spec.get("ids", []))
        return dest

    # visibility --------------------------------------------------------------------------
    def live(self, dest_id: str) -> LiveDestination | None:
        return self._live.get(dest_id)

    def elsewhere(self, dest: Destination) -> bool:
        """Whether another process of a cluster delivers ``dest`` (its lease is not ours)."""
        return self.owned is not None and dest.enabled and dest.id not in self._live

    def not_here(self, dest: Destination) -> Conflict:
        """What a request that needs ``dest``'s running side answers on a process that
        does not deliver it."""
        if self.elsewhere(dest):
            return Conflict(f"destination {dest.name!r} is delivered by another process of "
                            "the cluster; send this to that one (`millpond cluster status` "
                            "names its URL)", field="destination")
        return Conflict(f"destination {dest.name!r} is disabled; enable it first",
                        field="destination")

    def running(self) -> list[str]:
        """Names of the destinations whose pumps run (for the server's "ready" line)."""
        return [live.dest.name for live in list(self._live.values())]

    async def stats(self, dest: Destination) -> dict:
        """Counts by action and outcome, lag behind the log tail, and sender state.

        It only copies or reads single attributes of the running pump, never iterates its
        live structures (``/metrics`` reads it beside the pumps)."""
        live = self._live.get(dest.id)
        if live is not None:
            totals = Counter(live.totals)  # a C-level copy: the loop thread may be adding
            cursor, oldest = live.position()
            state = live.state()
        else:
            totals = delivery_totals(self.runs, dest.id)
            cursor = run_cursor(live_run(self.runs, dest), dest)
            oldest = None
            if self.elsewhere(dest):  # a cluster: its lease decides
                state = await self._elsewhere_state(dest)
            else:
                state = {"state": "disabled" if not dest.enabled else "error",
                         "last_error": None if not dest.enabled else "destination cannot start"}
        last = self.log.last_seq()
        behind = max(0, last - cursor)  # seqs after the cursor: an upper bound if gaps
        if oldest is None and behind:
            oldest = await head_received(self.log, cursor)
        lag = max(0.0, time.time() - oldest) if oldest is not None and behind else 0.0
        out = {**state, "cursor": cursor, "events_behind": behind,
               "lag_seconds": round(lag, 3),
               "dead_letters_waiting": self.runs.count_dead_letters(dest.id),
               **summarize(totals)}
        loads = getattr(live.runtime.dtype, "stats", None) if live is not None else None
        if loads is not None:
            # Warehouse / storage: rows, discards and last load per table (stored).
            out["loads"] = {**loads.as_dict(), "lag_seconds": out["lag_seconds"]}
        return out

    async def retrying(self, ref: str, *, run: str = "live", action: str | None = None,
                       limit: int = 100) -> dict:
        """The events the destination holds for a next attempt now (see
        :mod:`millpond.connections.retrying`); NotFound for an unknown destination or run."""
        dest = self.destinations.get(ref)
        return await retrying.retrying(self.runs, self.log, dest, self._live.get(dest.id),
                                       run=run, action=action, limit=limit)

    def retrying_counts(self, dest_id: str) -> dict[str, Counter[str]]:
        """Events held for a next attempt now, per run (``live`` or a replay id) and
        action."""
        return retrying.counts(self._live.get(dest_id))

    async def all_stats(self) -> list[tuple[Destination, dict]]:
        return [(d, await self.stats(d)) for d in self.destinations.list()]

    async def _elsewhere_state(self, dest: Destination) -> dict:
        """The state the process that delivers ``dest`` last published (its
        :meth:`LiveDestination.state`, at each lease renewal), with who that is and how
        old it is; ``elsewhere`` until it has said anything."""
        lease = None if self.cluster is None else await asyncio.to_thread(
            self.cluster.lease_of, dest.id)
        if lease is None or lease.status is None:
            return {"state": "elsewhere", "last_error": None,
                    "delivered_by": lease.owner if lease is not None else None}
        age = lease.status_age or 0.0
        state = {**lease.status, "delivered_by": lease.owner, "state_age": round(age, 1)}
        if state.get("next_attempt_in") is not None:
            state["next_attempt_in"] = max(0.0, state["next_attempt_in"] - age)
        return state

    def states(self) -> dict[str, dict]:
        """The running side's state of each destination this process delivers (what
        :meth:`stats` shows; published for the other processes of a cluster)."""
        return {dest_id: live.state() for dest_id, live in list(self._live.items())}

    def retry_here(self, dest_id: str) -> bool:
        """:meth:`retry_now` asked by another process (a no-op once the lease moved)."""
        live = self._live.get(dest_id)
        return live is not None and live.deliverer.retry_now()

    async def retry_now(self, ref: str) -> dict:
        """End the destination's wait for its next attempt (a vendor that said
        ``Retry-After: 3600`` and is back sooner). Conflict when it is disabled. On a
        cluster, a process that does not deliver it asks the one that does, which acts
        at its next lease renewal."""
        dest = self.destinations.get(ref)
        live = self._live.get(dest.id)
        if live is None:
            if self.elsewhere(dest) and self.cluster is not None:
                return await self._retry_elsewhere(dest, self.cluster)
            if self.elsewhere(dest):
                raise self.not_here(dest)
            raise Conflict(f"destination {dest.name!r} is disabled; enable it to deliver",
                           field="destination")
        woke = live.deliverer.retry_now()
        return {"id": dest.id, "name": dest.name, "retried_now": woke,
                "message": "retrying now" if woke else
                f"destination {dest.name} is not waiting to retry; nothing to do",
                "stats": await self.stats(dest)}

    async def _retry_elsewhere(self, dest: Destination, cluster: Cluster) -> dict:
        state = await self._elsewhere_state(dest)
        # Asked unless its owner said it is not waiting (nothing said yet: asked anyway).
        asked = state["state"] == "elsewhere" or bool(state.get("retry_now"))
        if asked:
            asked = await asyncio.to_thread(cluster.ask_retry, dest.id)
        owner = state.get("delivered_by") or "no process"
        if asked:
            log.info("retry-now of %s asked of %s", dest.name, owner,
                     extra={"destination": dest.name, "phase": "retry_now"})
            message = (f"asked {owner}, which delivers destination {dest.name}, to retry"
                       f" now; it does within {round(cluster.renew_seconds, 1):g} s")
        elif state.get("delivered_by") is None:
            message = (f"no process delivers destination {dest.name} at the moment (its"
                       " lease is free); the next one to take it starts by sending")
        else:
            message = (f"destination {dest.name} is not waiting to retry (said {owner}"
                       f" {state.get('state_age', 0):g} s ago); nothing to do")
        return {"id": dest.id, "name": dest.name, "retried_now": asked, "message": message,
                "stats": await self.stats(dest)}

    # redrive -----------------------------------------------------------------------------
    async def redrive(self, ref: str, ids: list[int] | None) -> dict:
        """Send dead letters again with the current configuration (see LiveDestination).
        On a cluster, a process that does not deliver the destination claims them and
        saves the redrive ``running``; the one that does starts it at its next lease
        renewal (:meth:`sync`), within a third of the lease time."""
        dest = self.destinations.get(ref)
        live = self._live.get(dest.id)
        if live is None and not self.elsewhere(dest):
            raise Conflict(f"destination {dest.name!r} is disabled; enable it to redrive",
                           field="destination")
        if live is not None:
            actions = live.runtime.actions
        else:
            try:
                actions = config.runtime(dest.type, dest.settings, dest.actions).actions
            except BadRequest as exc:  # saved before a catalog change made it invalid
                raise Conflict(f"destination {dest.name!r} cannot start: {exc.message}",
                               field="destination") from None
        claimed = self.runs.claim_dead_letters(dest.id, ids)
        configured = {a.name for a in actions}
        events: dict[int, StoredEvent] = {}
        refused: list[dict] = []
        keep = []
        for row in claimed:
            if row.action not in configured:
                refused.append({"id": row.id, "reason": f"action {row.action!r} is no "
                                "longer configured or is disabled"})
                continue
            if row.seq not in events:
                found = await self.log.get(row.seq)
                if found is None:
                    refused.append({"id": row.id, "reason": f"event {row.seq} is no "
                                    "longer in the log"})
                    continue
                events[row.seq] = found
            keep.append(row)
        if refused:
            self.runs.release_dead_letters([r["id"] for r in refused])
        if keep and live is not None:
            live.redrive(keep, events)
        elif keep:
            run = redrive_run(self.runs, dest.id, keep)
            log.info("redrive %s of destination %s (%d dead letters) saved for the process "
                     "that delivers it", run.id, dest.name, len(keep))
        return {"redriving": len(keep), "ids": [r.id for r in keep], "refused": refused}

    def counters(self) -> list[tuple[Destination, Counter]]:
        """Totals per destination for /metrics."""
        out = []
        for dest in self.destinations.list():
            live = self._live.get(dest.id)
            out.append((dest, Counter(live.totals) if live
                         else delivery_totals(self.runs, dest.id)))
        return out
