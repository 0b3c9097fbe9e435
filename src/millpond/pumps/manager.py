"""The destinations layer's front door: configuration changes, live pumps, redrives, stats.

Why every change goes through here: saving a destination and (re)starting its pump must
happen together, or the owner would see one configuration and the pump run another.
The API calls these methods; each validates fully, writes ``state.db``, then replaces
the destination's running side (:class:`~millpond.pumps.live.LiveDestination`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import replace
from typing import Any

from millpond.errors import BadRequest, Conflict
from millpond.log.base import EventLog
from millpond.pumps import config
from millpond.pumps.dead_letters import DeadLetterStore
from millpond.pumps.live import LiveDestination, head_received
from millpond.pumps.progress import ProgressStore
from millpond.pumps.retry import RetryPolicy
from millpond.pumps.stats import summarize
from millpond.pumps.store import Destination, DestinationStore
from millpond.pumps.transport import DEFAULT_TIMEOUT, HttpxTransport, Transport
from millpond.state import StateDB

log = logging.getLogger("millpond.pumps")

FIELDS = ("name", "type", "settings", "rate_limit", "actions", "enabled")


class PumpManager:
    """Owns the destination stores and one :class:`LiveDestination` per enabled one."""

    def __init__(self, event_log: EventLog, state: StateDB, *,
                 transport: Transport | None = None, policy: RetryPolicy | None = None,
                 timeout: float = DEFAULT_TIMEOUT):
        self.log = event_log
        self.destinations = DestinationStore(state)
        self.progress = ProgressStore(state)
        self.dead_letters = DeadLetterStore(state)
        self.policy = policy or RetryPolicy()
        #: Seconds per vendor request, for the transport made when none is given.
        self.timeout = timeout
        self._transport = transport
        self._live: dict[str, LiveDestination] = {}
        self._lock = asyncio.Lock()
        self._started = False
        #: Set by :class:`~millpond.pumps.replay_manager.ReplayManager` when it is wired.
        self.replays = None

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            self._transport = HttpxTransport(self.timeout)
        return self._transport

    # lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Start a pump for every enabled destination (from its saved cursor)."""
        recovered = self.dead_letters.recover()
        if recovered:
            log.info("%d dead letters were being redriven at shutdown; back to dead", recovered)
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
        try:
            rt = config.runtime(dest.type, dest.settings, dest.actions)
        except BadRequest as exc:  # saved before a catalog change made it invalid
            log.error("destination %s cannot start: %s", dest.name, exc.message)
            return
        live = LiveDestination(dest, rt, self.log, self.progress, self.dead_letters,
                               self.transport, self.policy)
        self._live[dest.id] = live
        live.start()
        if self.replays is not None:
            self.replays.attach(live)  # resumes its running replays from their cursors

    async def _restart(self, dest: Destination) -> None:
        old = self._live.pop(dest.id, None)
        if old is not None:
            await old.stop()
        if dest.enabled and self._started:
            self._launch(dest)

    # configuration -----------------------------------------------------------------------
    async def create(self, body: dict[str, Any]) -> Destination:
        """Validate and save a new destination; its live pump starts after the log's
        current tail (replays cover what came before)."""
        unknown = sorted(set(body) - set(FIELDS))
        if unknown:
            raise BadRequest(f"unknown field `{unknown[0]}`", field=unknown[0])
        name = body.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            raise BadRequest("name must be a non-empty string of at most 100 characters",
                             field="name")
        cls = config.destination_type(body.get("type"))
        config.parse_settings(cls, body.get("settings"))
        rate = config.rate_limit(body.get("rate_limit"), cls)
        actions = config.actions(body.get("actions"), cls)
        enabled = body.get("enabled", True)
        if not isinstance(enabled, bool):
            raise BadRequest("enabled must be true or false", field="enabled")
        async with self._lock:
            dest = self.destinations.create(
                name=name.strip(), type=cls.name, settings=dict(body.get("settings") or {}),
                rate_limit=rate, actions=actions, enabled=enabled,
                connected_seq=self.log.last_seq())
            self.progress.set_cursor(dest.id, dest.connected_seq)
            await self._restart(dest)
        return dest

    async def update(self, ref: str, body: dict[str, Any]) -> Destination:
        """Change any of name, settings, rate_limit, actions (``null``: the presets) and
        enabled. The type cannot change: create another destination instead."""
        unknown = sorted(set(body) - set(FIELDS))
        if unknown:
            raise BadRequest(f"unknown field `{unknown[0]}`", field=unknown[0])
        async with self._lock:
            dest = self.destinations.get(ref)
            if "type" in body and body["type"] != dest.type:
                raise Conflict("a destination's type cannot change; create a new destination",
                               field="type")
            cls = config.destination_type(dest.type)
            changes: dict[str, Any] = {}
            if "name" in body:
                name = body["name"]
                if not isinstance(name, str) or not name.strip() or len(name) > 100:
                    raise BadRequest("name must be a non-empty string of at most 100 "
                                     "characters", field="name")
                changes["name"] = name.strip()
            if "settings" in body:
                settings = config.keep_masked(body["settings"] or {}, dest.settings, cls)
                config.parse_settings(cls, settings)
                changes["settings"] = dict(settings)
            if "rate_limit" in body:
                merged = {**dest.rate_limit, **(body["rate_limit"] or {})}
                changes["rate_limit"] = config.rate_limit(merged, cls)
            if "actions" in body:
                changes["actions"] = config.actions(body["actions"], cls)
            if "enabled" in body:
                if not isinstance(body["enabled"], bool):
                    raise BadRequest("enabled must be true or false", field="enabled")
                changes["enabled"] = body["enabled"]
            dest = self.destinations.save(replace(dest, **changes))
            await self._restart(dest)
        return dest

    async def set_enabled(self, ref: str, enabled: bool) -> Destination:
        return await self.update(ref, {"enabled": enabled})

    async def delete(self, ref: str) -> Destination:
        """Stop delivering and forget the destination, its cursor, counters and dead
        letters (the events stay in the log)."""
        async with self._lock:
            dest = self.destinations.get(ref)
            old = self._live.pop(dest.id, None)
            if old is not None:
                await old.stop()
            self.destinations.delete(dest.id)
            self.progress.forget(dest.id)
            if self.replays is not None:
                self.replays.store.forget(dest.id)
        return dest

    # visibility --------------------------------------------------------------------------
    def live(self, dest_id: str) -> LiveDestination | None:
        return self._live.get(dest_id)

    def running(self) -> list[str]:
        """Names of the destinations whose pumps run (for the server's "ready" line)."""
        return [live.dest.name for live in list(self._live.values())]

    def stats(self, dest: Destination) -> dict:
        """Counts by action and outcome, lag behind the log tail, and sender state.

        Called from API worker threads too: it only copies or reads single attributes of
        the running pump, never iterates its live structures."""
        live = self._live.get(dest.id)
        if live is not None:
            totals = Counter(live.totals)  # a C-level copy: the loop thread may be adding
            cursor, oldest = live.position()
            state = live.state()
        else:
            totals = self.progress.counts(dest.id)
            stored = self.progress.cursor(dest.id)
            cursor = dest.connected_seq if stored is None else stored
            oldest = None
            state = {"state": "disabled" if not dest.enabled else "error",
                     "last_error": None if not dest.enabled else "destination cannot start"}
        last = self.log.last_seq()
        behind = max(0, last - cursor)
        if oldest is None and behind:
            oldest = head_received(self.log, cursor)
        lag = max(0.0, time.time() - oldest) if oldest is not None and behind else 0.0
        return {**state, "cursor": cursor, "events_behind": behind,
                "lag_seconds": round(lag, 3),
                "dead_letters_waiting": self.dead_letters.count(dest.id),
                **summarize(totals)}

    def all_stats(self) -> list[tuple[Destination, dict]]:
        return [(d, self.stats(d)) for d in self.destinations.list()]

    # redrive -----------------------------------------------------------------------------
    async def redrive(self, ref: str, ids: list[int] | None) -> dict:
        """Send dead letters again with the current configuration (see LiveDestination)."""
        dest = self.destinations.get(ref)
        live = self._live.get(dest.id)
        if live is None:
            raise Conflict(f"destination {dest.name!r} is disabled; enable it to redrive",
                           field="destination")
        claimed = self.dead_letters.claim(dest.id, ids)
        configured = {a.name for a in live.runtime.actions}
        events: dict[int, bytes] = {}
        refused: list[dict] = []
        keep: list[dict] = []
        for row in claimed:
            if row["action"] not in configured:
                refused.append({"id": row["id"], "reason": f"action {row['action']!r} is no "
                                "longer configured or is disabled"})
                continue
            if row["seq"] not in events:
                found = await asyncio.to_thread(self.log.read_after, row["seq"] - 1, 1)
                if not found or found[0][0] != row["seq"]:
                    refused.append({"id": row["id"], "reason": f"event {row['seq']} is no "
                                    "longer in the log"})
                    continue
                events[row["seq"]] = found[0][1]
            keep.append(row)
        if refused:
            self.dead_letters.release([r["id"] for r in refused])
        if keep:
            live.redrive(keep, events)
        return {"redriving": len(keep), "ids": [r["id"] for r in keep], "refused": refused}

    def counters(self) -> list[tuple[Destination, Counter]]:
        """Totals per destination for /metrics."""
        out = []
        for dest in self.destinations.list():
            live = self._live.get(dest.id)
            out.append((dest, Counter(live.totals) if live else self.progress.counts(dest.id)))
        return out
