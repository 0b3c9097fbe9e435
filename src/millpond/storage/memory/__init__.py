"""The memory backend: every contract in dicts and lists, for fast tests.

Not durable: everything is gone when the process ends (the contract suite runs its
durability tests only over backends that declare themselves durable). Thread-safe, and
its waits wake any event loop, so it runs the whole server as the SQLite backend does.
"""

from __future__ import annotations

from millpond.storage.health import StorageHealth
from millpond.storage.memory.eraser import MemoryEraser
from millpond.storage.memory.index import MemoryEventIndex
from millpond.storage.memory.loadstats import MemoryLoadStatsStore
from millpond.storage.memory.log import MemoryEventLog
from millpond.storage.memory.profiles import MemoryProfileStore
from millpond.storage.memory.runs import MemoryRunStore
from millpond.storage.memory.segments import MemorySegmentStore
from millpond.storage.memory.state import (
    MemoryDestinationStore,
    MemoryImportJobStore,
    MemoryRegulationStore,
    MemoryRejectionStore,
    MemorySourceStore,
)
from millpond.storage.models import Tier


class MemoryStorage:
    """:class:`~millpond.storage.contracts.Storage` in this process's memory."""

    def __init__(self) -> None:
        #: Never fails by itself; tests may report episodes to it.
        self.health = StorageHealth()
        self.log = MemoryEventLog()
        self.index = MemoryEventIndex(self.log)
        self.sources = MemorySourceStore()
        self.destinations = MemoryDestinationStore()
        self.runs = MemoryRunStore()
        self.load_stats = MemoryLoadStatsStore()
        self.imports = MemoryImportJobStore()
        self.rejections = MemoryRejectionStore()
        self.profiles = MemoryProfileStore()
        self.segments = MemorySegmentStore()
        self.regulations = MemoryRegulationStore()
        self.eraser = MemoryEraser(self.log, self.runs, self.rejections, self.profiles,
                                   self.segments)

    def sizes(self) -> dict[str, int]:
        """The log's bodies, in bytes (the rest is small)."""
        return {"log": sum(len(r.event.body) for r in self.log.rows())}

    def tiers(self) -> list[Tier]:
        """One tier, in memory (its bytes are the bodies')."""
        rows = self.log.rows()
        ts = [r.event.ts_ms for r in rows]
        return [Tier("hot", self.sizes()["log"], len(rows), min(ts, default=None),
                     max(ts, default=None))]

    def close(self) -> None:
        self.log.close()
        self.profiles.close()


__all__ = ["MemoryStorage"]
