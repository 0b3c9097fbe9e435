"""Delivery metrics for ``/metrics``, read from the pumps' own counters at scrape time.

Why a custom collector instead of prometheus ``Counter`` objects incremented per
outcome: the pumps already keep exact, persisted totals per destination (they survive a
restart), so exporting those is both cheaper on the hot path and truer than a second
set of in-memory counters that would reset to zero with the process. Those totals are
flows (events that entered each outcome, ever), so the counters never decrease, also
across a redrive; how many dead letters wait now is the gauge ``millpond_dead_letters``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from millpond import metrics
from millpond.delivery.outcomes import Outcome

if TYPE_CHECKING:
    from millpond.connections.service import PumpManager


class DeliveryCollector:
    """Exports ``millpond_delivery_*`` for the manager it is pointed at. The gauges come
    from the stats :func:`refresh` read just before (they read the log, which is async)."""

    def __init__(self) -> None:
        self.manager: PumpManager | None = None
        self.stats: list = []

    def collect(self):
        events = CounterMetricFamily(
            "millpond_delivery_events", "Events that finished delivery, by outcome and reason",
            labels=["destination", "action", "outcome", "reason"])
        retries = CounterMetricFamily(
            "millpond_delivery_retries", "Items sent again after a transient failure",
            labels=["destination", "action"])
        redriven = CounterMetricFamily(
            "millpond_delivery_redriven",
            "Dead letters a redrive took back (their events' new outcomes count in "
            "millpond_delivery_events); dead_lettered minus this is what still waits",
            labels=["destination", "action", "reason"])
        lag = GaugeMetricFamily("millpond_delivery_lag_seconds",
                                "Age of the oldest event not yet delivered (0: caught up)",
                                labels=["destination"])
        behind = GaugeMetricFamily("millpond_delivery_events_behind",
                                   "Events in the log after the destination's cursor",
                                   labels=["destination"])
        failing = GaugeMetricFamily(
            "millpond_delivery_failing",
            "1 while the destination has failed longer than its max_retry_age (its events "
            "are dead-lettered until it succeeds again), else 0", labels=["destination"])
        rows = CounterMetricFamily(
            "millpond_warehouse_rows_loaded",
            "Rows a warehouse or storage destination added to each table (users/accounts: "
            "rows changed); stored, so it survives restarts", labels=["destination", "table"])
        discards = CounterMetricFamily(
            "millpond_warehouse_discards",
            "Values or events a warehouse destination could not store as sent, per table "
            "(each in its millpond_discards table with the reason)",
            labels=["destination", "table"])
        last_load = GaugeMetricFamily(
            "millpond_warehouse_last_load_timestamp_seconds",
            "When each table of a warehouse or storage destination last took a load (epoch)",
            labels=["destination", "table"])
        manager = self.manager
        if manager is not None:
            for dest, stats in self.stats:
                for table, t in (stats.get("loads") or {}).get("tables", {}).items():
                    rows.add_metric([dest.name, table], t["rows"])
                    discards.add_metric([dest.name, table], t["discards"])
                    if t["last_load"] is not None:
                        last_load.add_metric([dest.name, table], t["last_load"])
                lag.add_metric([dest.name], stats["lag_seconds"])
                behind.add_metric([dest.name], stats["events_behind"])
                failing.add_metric([dest.name], 1.0 if stats.get("state") == "failing" else 0.0)
            for dest, totals in manager.counters():
                for (action, outcome, reason), n in sorted(totals.items()):
                    if outcome == Outcome.RETRIED:
                        retries.add_metric([dest.name, action], n)
                    elif outcome == Outcome.REDRIVEN:
                        redriven.add_metric([dest.name, action, reason], n)
                    else:
                        events.add_metric([dest.name, action, outcome, reason], n)
        yield events
        yield retries
        yield redriven
        yield lag
        yield behind
        yield failing
        yield rows
        yield discards
        yield last_load

    def describe(self):
        return []


_COLLECTOR: DeliveryCollector | None = None


def install(manager: PumpManager) -> None:
    """Point the (once registered) collector at ``manager``."""
    global _COLLECTOR
    if _COLLECTOR is None:
        _COLLECTOR = DeliveryCollector()
        metrics.REGISTRY.register(_COLLECTOR)
    _COLLECTOR.manager = manager
    _COLLECTOR.stats = []


async def refresh() -> None:
    """Read the stats the next scrape exports (call it right before ``generate_latest``)."""
    collector = _COLLECTOR
    if collector is not None and collector.manager is not None:
        collector.stats = await collector.manager.all_stats()
