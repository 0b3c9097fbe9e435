"""Deleting people from the memory backend: each store drops what it holds of them."""

from __future__ import annotations

from collections.abc import Sequence

from millpond.storage.memory.log import MemoryEventLog
from millpond.storage.memory.profiles import MemoryProfileStore
from millpond.storage.memory.runs import MemoryRunStore
from millpond.storage.memory.segments import MemorySegmentStore
from millpond.storage.memory.state import MemoryRejectionStore


class MemoryEraser:
    """:class:`~millpond.storage.contracts.PersonEraser` over the memory stores (the
    per-person index is computed from the log, so it forgets with it)."""

    def __init__(self, log: MemoryEventLog, runs: MemoryRunStore,
                 rejections: MemoryRejectionStore, profiles: MemoryProfileStore,
                 segments: MemorySegmentStore):
        self._log = log
        self._runs = runs
        self._rejections = rejections
        self._profiles = profiles
        self._segments = segments

    def event_owners(self, ids: Sequence[str]) -> dict[str, bool]:
        return self._log.people_owners(ids)

    def events(self, ids: Sequence[str]) -> int:
        seqs = self._log.people_seqs(ids)
        self._log.forget(seqs, dedupe=True)
        return len(seqs)

    def dead_letters(self, ids: Sequence[str]) -> int:
        return self._runs.forget_dead_letters(self._log.people_seqs(ids), ids)

    def rejections(self, ids: Sequence[str]) -> int:
        return self._rejections.forget(ids)

    def profiles(self, ids: Sequence[str]) -> int:
        return self._profiles.forget(ids)

    def segment_memberships(self, ids: Sequence[str]) -> int:
        return self._segments.forget(ids)

    def scrub(self) -> None:
        """Nothing to do: removed objects are gone with their last reference."""
