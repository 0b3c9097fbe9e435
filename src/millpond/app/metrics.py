"""Server-wide metrics read at scrape time: the storage's health (a full disk).

Why read at scrape time, like :mod:`millpond.pumps.metrics`: the figures already live in
the parts that own them (the storage's :class:`~millpond.storage.health.StorageHealth`),
so ``/metrics`` reports exactly what stats and ``/healthz`` say, and the hot paths keep
no second set of counters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from millpond import metrics

if TYPE_CHECKING:
    from millpond.server import Millpond


class ServerCollector:
    """Exports ``millpond_storage_*`` for the server it is pointed at."""

    def __init__(self) -> None:
        self.mp: Millpond | None = None

    def collect(self):
        mp = self.mp
        if mp is None:
            return
        health = mp.storage.health
        episode = health.snapshot()
        unavailable = GaugeMetricFamily(
            "millpond_storage_unavailable",
            "1 while the storage refuses writes (a full disk: the collector answers 503 "
            "with Retry-After, delivery holds its checkpoints), else 0")
        unavailable.add_metric([], 1.0 if episode else 0.0)
        yield unavailable
        refused = CounterMetricFamily(
            "millpond_storage_refused_writes",
            "Writes the storage refused as unavailable since the server started")
        refused.add_metric([], health.refused_total)
        yield refused
        episodes = CounterMetricFamily(
            "millpond_storage_unavailable_episodes",
            "Times the storage became unavailable (each logged once) since the server started")
        episodes.add_metric([], health.episodes_total)
        yield episodes

    def describe(self):
        return []


_COLLECTOR: ServerCollector | None = None


def install(mp: Millpond) -> None:
    """Point the (once registered) collector at ``mp``."""
    global _COLLECTOR
    if _COLLECTOR is None:
        _COLLECTOR = ServerCollector()
        metrics.REGISTRY.register(_COLLECTOR)
    _COLLECTOR.mp = mp
