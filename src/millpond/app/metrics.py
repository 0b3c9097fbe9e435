"""Server-wide metrics read at scrape time: the storage's health (a full disk), each
destination's state and dead letters, replays and imports.

Why read at scrape time, like :mod:`millpond.pumps.metrics`: the figures already live in
the parts that own them (the storage's :class:`~millpond.storage.health.StorageHealth`),
so ``/metrics`` reports exactly what stats and ``/healthz`` say, and the hot paths keep
no second set of counters.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from millpond import metrics
from millpond.storage.models import DeadLetterState, RunKind, RunState

#: Replay states that still hold their destination's replay slot.
ACTIVE_REPLAY = (RunState.PLANNED, RunState.RUNNING, RunState.PAUSED)

if TYPE_CHECKING:
    from millpond.app.services import Services


class ServerCollector:
    """Exports ``millpond_storage_*``, ``millpond_replay*``, ``millpond_import*``,
    ``millpond_dead_letters`` and ``millpond_destination_state`` for the server it is
    pointed at."""

    def __init__(self) -> None:
        self.mp: Services | None = None

    def collect(self):
        mp = self.mp
        if mp is None:
            return
        yield from _storage(mp)
        yield from _destinations(mp)
        yield from _replays(mp)
        yield from _imports(mp)

    def describe(self):
        return []


def _storage(mp: Services):
    health = mp.storage.health
    unavailable = GaugeMetricFamily(
        "millpond_storage_unavailable",
        "1 while the storage refuses writes (a full disk: the collector answers 503 "
        "with Retry-After, delivery holds its checkpoints), else 0")
    unavailable.add_metric([], 1.0 if health.snapshot() else 0.0)
    refused = CounterMetricFamily(
        "millpond_storage_refused_writes",
        "Writes the storage refused as unavailable since the server started")
    refused.add_metric([], health.refused_total)
    episodes = CounterMetricFamily(
        "millpond_storage_unavailable_episodes",
        "Times the storage became unavailable (each logged once) since the server started")
    episodes.add_metric([], health.episodes_total)
    return unavailable, refused, episodes


def _destinations(mp: Services):
    state = GaugeMetricFamily(
        "millpond_destination_state",
        "1 for each destination's current delivery state (running, retrying, failing, "
        "error, disabled), as its stats show it",
        labels=["destination", "state"])
    dead = GaugeMetricFamily(
        "millpond_dead_letters",
        "Dead letters per destination by state (dead: waiting for a redrive)",
        labels=["destination", "state"])
    for dest in mp.pumps.destinations.list():
        live = mp.pumps.live(dest.id)
        if live is not None:
            current = live.state()["state"]
        else:
            current = "disabled" if not dest.enabled else "error"
        state.add_metric([dest.name, current], 1.0)
        for dl_state in (DeadLetterState.DEAD, DeadLetterState.REDRIVING):
            dead.add_metric([dest.name, str(dl_state)],
                            mp.storage.runs.count_dead_letters(dest.id, dl_state))
    return state, dead


def _replays(mp: Services):
    events = CounterMetricFamily(
        "millpond_replay_events",
        "Events replays finished, by destination and outcome (sent, skipped, "
        "dead_lettered; retried counts attempts sent again)",
        labels=["destination", "outcome"])
    scanned = CounterMetricFamily(
        "millpond_replay_scanned_events", "Events replays read from their windows",
        labels=["destination"])
    active = GaugeMetricFamily(
        "millpond_replays_active", "Replays not yet finished, by state",
        labels=["state"])
    rate = GaugeMetricFamily(
        "millpond_replay_rate_events_per_second",
        "Current sending rate of each running replay (events/s)",
        labels=["destination", "replay"])
    by_outcome: Counter = Counter()
    by_scanned: Counter = Counter()
    states: Counter = Counter({str(s): 0 for s in ACTIVE_REPLAY})
    names = {d.id: d.name for d in mp.pumps.destinations.list()}
    for run in mp.storage.runs.list(kinds=[RunKind.REPLAY]):
        name = names.get(run.destination_id) or run.spec.get("destination_name") \
            or run.destination_id
        for (_action, outcome, _reason), n in run.counts.items():
            by_outcome[name, outcome] += n
        by_scanned[name] += run.scanned
        if run.state in ACTIVE_REPLAY:
            states[str(run.state)] += 1
        if run.state == RunState.RUNNING:
            shown = mp.replays.to_dict(run)
            rate.add_metric([name, run.id], shown["current_rate"])
    for (name, outcome), n in sorted(by_outcome.items()):
        events.add_metric([name, outcome], n)
    for name, n in sorted(by_scanned.items()):
        scanned.add_metric([name], n)
    for name, n in sorted(states.items()):
        active.add_metric([name], n)
    return events, scanned, active, rate


def _imports(mp: Services):
    rows = CounterMetricFamily(
        "millpond_import_rows",
        "Rows of server-side imports by source and outcome (accepted: stored as new "
        "events; duplicate: already stored; rejected: in the error report)",
        labels=["source", "outcome"])
    active = GaugeMetricFamily("millpond_imports_active", "Imports running now")
    totals: Counter = Counter()
    running = 0
    names: dict[str, str] = {s.id: s.name for s in mp.sources.origins()}
    for job in mp.storage.imports.list(limit=1_000_000):
        name = names.get(job.source_id, job.source_id)
        figures = job.summary or job.progress or {}
        totals[name, "accepted"] += figures.get("events_accepted", 0)
        totals[name, "duplicate"] += figures.get("duplicates", 0)
        totals[name, "rejected"] += figures.get("rows_rejected", 0)
        running += job.state == "running"
    for (name, outcome), n in sorted(totals.items()):
        rows.add_metric([name, outcome], n)
    active.add_metric([], running)
    return rows, active


_COLLECTOR: ServerCollector | None = None


def install(mp: Services) -> None:
    """Point the (once registered) collector at ``mp``."""
    global _COLLECTOR
    if _COLLECTOR is None:
        _COLLECTOR = ServerCollector()
        metrics.REGISTRY.register(_COLLECTOR)
    _COLLECTOR.mp = mp
