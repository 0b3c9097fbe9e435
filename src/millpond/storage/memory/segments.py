"""Segments, memberships, history and the schedule in dicts (thread-safe, not durable)."""

from __future__ import annotations

import copy
import heapq
import threading
from collections.abc import Sequence

from millpond.errors import Conflict, NotFound
from millpond.storage.models import Member, MembershipChange, MembersPage, Segment


class MemorySegmentStore:
    """:class:`~millpond.storage.contracts.SegmentStore` in dicts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._segments: dict[str, Segment] = {}
        self._rows: dict[tuple[str, str], Member] = {}
        self._by_id: dict[str, set[tuple[str, str]]] = {}
        self._history: list[MembershipChange] = []
        self._checkpoint = 0
        self._retention_applied: dict[str, int] = {}

    # -- definitions --------------------------------------------------------------------

    def create(self, segment: Segment) -> Segment:
        with self._lock:
            if segment.id in self._segments:
                raise Conflict(f"a segment with id {segment.id!r} already exists", field="id")
            self._check_key(segment)
            self._segments[segment.id] = copy.deepcopy(segment)
        return segment

    def _check_key(self, segment: Segment) -> None:
        if any(s.key == segment.key and s.id != segment.id for s in self._segments.values()):
            raise Conflict(f"a segment with key {segment.key!r} already exists", field="key")

    def get(self, ref: str) -> Segment:
        with self._lock:
            found = self._segments.get(ref) or next(
                (s for s in self._segments.values() if s.key == ref), None)
            if found is None:
                raise NotFound(f"no segment {ref!r}", field="segment")
            return copy.deepcopy(found)

    def list(self) -> list[Segment]:
        with self._lock:
            return sorted((copy.deepcopy(s) for s in self._segments.values()),
                          key=lambda s: (s.created_ms, s.id))

    def update(self, segment: Segment) -> Segment:
        with self._lock:
            if segment.id not in self._segments:
                raise NotFound(f"no segment {segment.id!r}", field="segment")
            self._check_key(segment)
            self._segments[segment.id] = copy.deepcopy(segment)
        return segment

    def delete(self, segment_id: str) -> Segment:
        with self._lock:
            found = self._segments.pop(segment_id, None)
            if found is None:
                raise NotFound(f"no segment {segment_id!r}", field="segment")
            for key in [k for k in self._rows if k[0] == segment_id]:
                self._remove(key)
            self._history = [h for h in self._history if h.segment_id != segment_id]
        return found

    # -- memberships ----------------------------------------------------------------------

    def _remove(self, key: tuple[str, str]) -> None:
        row = self._rows.pop(key, None)
        if row is not None:
            for identity in row.ids:
                self._by_id.get(identity, set()).discard(key)

    def apply(self, rows: Sequence[Member], *, drop: Sequence[tuple[str, str]] = (),
              checkpoint: int | None = None) -> list[MembershipChange]:
        with self._lock:
            for key in drop:
                self._remove(key)
            added: list[MembershipChange] = []
            for row in rows:
                if row.segment_id not in self._segments:
                    continue
                key = (row.segment_id, row.person_id)
                old = self._rows.get(key)
                if (old.member if old else False) != row.member:
                    added.append(MembershipChange(row.segment_id, row.person_id, row.member,
                                                  row.since_ms, row.processed_ms))
                self._remove(key)
                self._rows[key] = row
                for identity in row.ids:
                    self._by_id.setdefault(identity, set()).add(key)
            self._history.extend(added)
            if checkpoint is not None:
                self._checkpoint = checkpoint
            return added

    def forget(self, ids: Sequence[str]) -> int:
        """Remove the rows (and history) of the people any of ``ids`` names; how many."""
        with self._lock:
            keys: set[tuple[str, str]] = set()
            for i in ids:
                keys |= self._by_id.get(i, set())
            keys |= {k for k, r in self._rows.items()
                     if r.user_id in ids or r.anonymous_id in ids}
            people = {p for _, p in keys}
            for key in keys:
                self._remove(key)
            self._history = [h for h in self._history if h.person_id not in people]
            return len(keys)

    def member(self, segment_id: str, person_id: str) -> Member | None:
        with self._lock:
            return self._rows.get((segment_id, person_id))

    def rows(self, segment_id: str) -> list[Member]:
        with self._lock:
            found = [r for (s, _), r in self._rows.items() if s == segment_id]
        return sorted(found, key=lambda r: r.person_id)

    def by_ids(self, ids: Sequence[str]) -> list[Member]:
        with self._lock:
            keys: set[tuple[str, str]] = set()
            for i in ids:
                keys |= self._by_id.get(i, set())
            return [self._rows[k] for k in sorted(keys)]

    def members(self, segment_id: str, *, after: str | None = None,
                limit: int = 50) -> MembersPage:
        with self._lock:
            found = [r for (s, p), r in self._rows.items()
                 if s == segment_id and r.member and (after is None or p > after)]
        found.sort(key=lambda r: r.person_id)
        page = found[:limit]
        more = len(found) > limit
        return MembersPage(page, page[-1].person_id if more and page else None)

    def count_members(self, segment_id: str) -> int:
        with self._lock:
            return sum(1 for (s, _), r in self._rows.items() if s == segment_id and r.member)

    def person_segments(self, person_id: str) -> list[Member]:
        with self._lock:
            return sorted((r for (_, p), r in self._rows.items()
                           if p == person_id and r.member), key=lambda r: r.segment_id)

    def history(self, person_id: str, segment_id: str | None = None) -> list[MembershipChange]:
        with self._lock:
            return [h for h in self._history if h.person_id == person_id
                    and (segment_id is None or h.segment_id == segment_id)]

    def history_counts(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        counts = dict.fromkeys(keys, 0)
        with self._lock:
            for h in self._history:
                key = (h.segment_id, h.person_id)
                if key in counts:
                    counts[key] += 1
        return counts

    def due(self, now_ms: int, limit: int = 1000) -> list[Member]:
        with self._lock:
            found = [r for r in self._rows.values()
                     if r.next_change_ms is not None and r.next_change_ms <= now_ms]
        return heapq.nsmallest(limit, found, key=lambda r: (r.next_change_ms, r.segment_id,
                                                             r.person_id))

    def next_due(self) -> int | None:
        with self._lock:
            times = [r.next_change_ms for r in self._rows.values()
                     if r.next_change_ms is not None]
        return min(times) if times else None

    def checkpoint(self) -> int:
        return self._checkpoint

    def retention_applied(self) -> dict[str, int]:
        with self._lock:
            return dict(self._retention_applied)

    def set_retention_applied(self, source_id: str, before_ms: int) -> None:
        with self._lock:
            self._retention_applied[source_id] = max(
                before_ms, self._retention_applied.get(source_id, before_ms))
