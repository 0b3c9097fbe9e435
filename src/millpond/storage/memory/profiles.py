"""The profile store in dicts: the pure plan of :mod:`millpond.profiles.merge`, written back
with the same joins the SQLite store expresses in SQL (a greater trait record wins)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from millpond.errors import BadRequest
from millpond.profiles.merge import ClusterFacts, Plan, plan_chunk
from millpond.profiles.search import matches, normalize, terms
from millpond.profiles.shape import profile_view
from millpond.profiles.updates import ProfileUpdate, to_update
from millpond.storage.models import PeoplePage

#: A stored trait winner: (time, messageId, value JSON, seq or None, source_id or None).
Stored = tuple[float, str, str, int | None, str | None]


def _order(record: Stored) -> tuple[float, str, str, int, str]:
    t, mid, value, seq, source = record
    return (t, mid, value, -1 if seq is None else seq, source or "")


@dataclass
class _State:
    identities: dict[str, list[int]] = field(default_factory=dict)  # id -> [cid, is_user]
    members: dict[int, set[str]] = field(default_factory=dict)  # cid -> ids
    clusters: dict[int, ClusterFacts] = field(default_factory=dict)
    traits: dict[int, dict[tuple[str, str], Stored]] = field(default_factory=dict)
    groups: dict[int, set[str]] = field(default_factory=dict)
    profile_ids: dict[str, str] = field(default_factory=dict)
    next_cid: int = 1
    checkpoint: int = 0

    def copy(self) -> _State:
        return _State({k: list(v) for k, v in self.identities.items()},
                      {k: set(v) for k, v in self.members.items()}, dict(self.clusters),
                      {k: dict(v) for k, v in self.traits.items()},
                      {k: set(v) for k, v in self.groups.items()}, dict(self.profile_ids),
                      self.next_cid, self.checkpoint)


class MemoryProfileStore:
    """:class:`~millpond.storage.contracts.ProfileStore` in memory; an apply works on a copy
    of the state and replaces it at the end, so a failing batch changes nothing."""

    def __init__(self, *, batch_size: int = 5000) -> None:
        self._batch_size = batch_size
        self._lock = threading.Lock()
        self._state = _State()

    def checkpoint(self) -> int:
        return self._state.checkpoint

    def forget(self, ids: Sequence[str]) -> int:
        """Remove the profiles any of ``ids`` belongs to; how many."""
        with self._lock:
            state = self._state.copy()
            cids = {state.identities[i][0] for i in ids if i in state.identities}
            for cid in cids:
                members = state.members.pop(cid, set())
                for one in members:
                    state.identities.pop(one, None)
                state.profile_ids = {p: c for p, c in state.profile_ids.items()
                                     if c not in members}
                state.clusters.pop(cid, None)
                state.traits.pop(cid, None)
                state.groups.pop(cid, None)
            self._state = state
        return len(cids)

    def set_checkpoint(self, seq: int) -> None:
        with self._lock:
            self._state.checkpoint = int(seq)

    def apply_many(self, events: Iterable[Mapping[str, Any]], *,
                   checkpoint: int | None = None) -> int:
        applied = 0
        with self._lock:
            state = self._state.copy()
            updates = (u for u in map(to_update, events) if u is not None)
            while chunk := list(islice(updates, self._batch_size)):
                applied += len(chunk)
                _apply(state, chunk)
            if checkpoint is not None:
                state.checkpoint = int(checkpoint)
            self._state = state
        return applied

    def get(self, any_id: str) -> dict[str, Any] | None:
        state = self._state  # replaced whole by writers: a consistent snapshot
        entry = state.identities.get(any_id)
        if entry is None and any_id in state.profile_ids:
            entry = state.identities.get(state.profile_ids[any_id])
        if entry is None:
            return None
        return _view(state, entry[0])

    def get_many(self, any_ids: Sequence[str]) -> dict[str, dict[str, Any] | None]:
        state = self._state  # one snapshot for all of them
        found: dict[str, dict[str, Any] | None] = {}
        for any_id in any_ids:
            entry = state.identities.get(any_id)
            if entry is None and any_id in state.profile_ids:
                entry = state.identities.get(state.profile_ids[any_id])
            found[any_id] = None if entry is None else _view(state, entry[0])
        return found

    def search(self, query: str, *, after: str | None = None, limit: int = 50) -> PeoplePage:
        """A scan of every profile's terms, in cluster order (the cursor: the last
        cluster number of the page)."""
        if after is not None and not after.isdigit():
            raise BadRequest("cursor must be a value returned as next_cursor", field="cursor")
        start = int(after or 0)
        q = normalize(query)
        state = self._state
        found: list[int] = []
        for cid in sorted(c for c in state.clusters if c > start):
            own = [(gid, name, record[2])
                   for (gid, name), record in state.traits.get(cid, {}).items()]
            if matches(q, terms(state.members[cid], own)):
                found.append(cid)
                if len(found) > limit:
                    break
        more = len(found) > limit
        return PeoplePage([_view(state, cid) for cid in found[:limit]],
                          str(found[limit - 1]) if more and limit else None)

    def close(self) -> None:
        """Nothing to release."""


def _view(state: _State, cid: int) -> dict[str, Any]:
    facts = state.clusters[cid]
    identities = [(i, bool(state.identities[i][1])) for i in sorted(state.members[cid])]
    traits = [(gid, name, *record)
              for (gid, name), record in sorted(state.traits.get(cid, {}).items())]
    return profile_view(facts.canon[2], None if facts.uid is None else facts.uid[2],
                        identities, sorted(state.groups.get(cid, ())), traits)


def _apply(state: _State, chunk: list[ProfileUpdate]) -> None:
    ids = {identity for update in chunk for identity in update.ids}
    known = {i: (state.identities[i][0], state.identities[i][1])
             for i in ids if i in state.identities}
    facts = {cid: state.clusters[cid] for cid, _ in known.values()}

    def new_cid() -> int:
        state.next_cid += 1
        return state.next_cid - 1

    plan = plan_chunk(chunk, known, facts, new_cid)
    _write(state, plan)


def _upsert(traits: dict[tuple[str, str], Stored], key: tuple[str, str],
            record: Stored) -> None:
    old = traits.get(key)
    if old is None or _order(record) > _order(old):
        traits[key] = record


def _write(state: _State, plan: Plan) -> None:
    for old, survivor in plan.absorbed:
        for identity in state.members.pop(old, set()):
            state.identities[identity][0] = survivor
            state.members.setdefault(survivor, set()).add(identity)
        into = state.traits.setdefault(survivor, {})
        for key, record in state.traits.pop(old, {}).items():
            _upsert(into, key, record)
        state.groups.setdefault(survivor, set()).update(state.groups.pop(old, set()))
        state.clusters.pop(old, None)
    for identity, cid, is_user in plan.new_identities:
        state.identities[identity] = [cid, is_user]
        state.members.setdefault(cid, set()).add(identity)
    for identity in plan.promoted_users:
        state.identities[identity][1] = 1
    state.clusters.update(plan.clusters)
    for pid, canon in plan.profile_ids:
        state.profile_ids.setdefault(pid, canon)
    for (cid, gid, name), (t, mid, value, seq, source) in plan.traits.items():
        _upsert(state.traits.setdefault(cid, {}), (gid, name),
                (t, mid, value, None if seq < 0 else seq, source or None))
    for cid, gid in plan.memberships:
        state.groups.setdefault(cid, set()).add(gid)
