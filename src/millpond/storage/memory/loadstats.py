"""Per-table load totals in a dict (see :class:`~millpond.storage.contracts.LoadStatsStore`)."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from millpond.storage.models import TableLoadStats


class MemoryLoadStatsStore:
    """:class:`~millpond.storage.contracts.LoadStatsStore` in a dict of dicts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_destination: dict[str, dict[str, TableLoadStats]] = {}

    def add(self, destination_id: str, tables: Mapping[str, tuple[int, int]],
            at: float) -> None:
        with self._lock:
            mine = self._by_destination.setdefault(destination_id, {})
            for name, (rows, discards) in tables.items():
                old = mine.get(name) or TableLoadStats()
                mine[name] = TableLoadStats(old.rows + rows, old.discards + discards, at)

    def get(self, destination_id: str) -> dict[str, TableLoadStats]:
        with self._lock:
            mine = self._by_destination.get(destination_id, {})
            return {name: TableLoadStats(t.rows, t.discards, t.last_load)
                    for name, t in sorted(mine.items())}

    def forget(self, destination_id: str) -> None:
        with self._lock:
            self._by_destination.pop(destination_id, None)
