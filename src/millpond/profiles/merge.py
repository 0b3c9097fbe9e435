"""Plan how one chunk of profile updates changes the store, without touching storage.

Why a pure planning step: every rule of the store is a *join* (max or min, or set union), and
joins are commutative, associative and idempotent. That is what makes the result independent of
arrival order and of how the events were split into batches. Keeping the planning pure makes
that property easy to see here and easy to test; a backend's profile store only loads the state
the plan needs and writes the plan back with the same joins (in SQL, on SQLite).

The orders used (all total, so there is always exactly one winner):

- trait record: ``(time, messageId, value JSON, seq, source_id)``; a greater record wins. The
  last three only matter if two different events share a ``messageId`` (they should not, the log
  deduplicates on it), and keep even that case order-independent.
- ``user_id``: the ``userId`` of the greatest ``(time, messageId)`` event that names one.
- canonical identity (behind the public profile id): the id of the least
  ``(time, messageId, id)`` mention, i.e. the identity seen first in event time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgspec

from .updates import ProfileUpdate

__all__ = [
    "ClusterFacts",
    "Plan",
    "TraitRecord",
    "encode_value",
    "plan_changes",
    "plan_chunk",
    "profile_id_for",
    "PROFILE_SCOPE",
]

PROFILE_SCOPE = ""
"""``gid`` of profile traits; group traits use their (never empty) group id."""

NULL_JSON = "null"

_encoder = msgspec.json.Encoder(order="sorted", enc_hook=str)


def encode_value(value: Any) -> str:
    """Canonical JSON of a trait value (sorted keys, so equal values compare equal).

    Anything JSON cannot hold is stored as its ``str()``: one odd value must not make a whole
    batch, and with it the profile follower, fail forever.
    """
    try:
        return _encoder.encode(value).decode()
    except (TypeError, ValueError, OverflowError):  # e.g. non-str keys, lone surrogates
        return _encoder.encode(str(value).encode("utf-8", "replace").decode()).decode()


def profile_id_for(canon: str) -> str:
    """Public profile id: an opaque, stable digest of the canonical identity."""
    return "prf_" + hashlib.blake2b(canon.encode(), digest_size=10).hexdigest()


TraitRecord = tuple[float, str, str, int, str]
"""One trait's winner: ``(time, messageId, value JSON, seq, source_id)``, with seq -1 and
source_id ``""`` when unknown so tuples stay comparable. Tuple order *is* the LWW order."""


class ClusterFacts(NamedTuple):
    size: int
    canon: tuple[float, str, str]
    """(time, messageId, id) of the earliest mention: min wins."""
    uid: tuple[float, str, str] | None
    """(time, messageId, userId) of the latest naming of a user id: max wins."""


@dataclass(slots=True)
class Plan:
    absorbed: list[tuple[int, int]] = field(default_factory=list)
    """(old cluster, surviving cluster): move old's rows into the survivor."""
    new_identities: list[tuple[str, int, int]] = field(default_factory=list)
    promoted_users: list[str] = field(default_factory=list)
    """Known identities seen as a ``userId`` for the first time."""
    clusters: dict[int, ClusterFacts] = field(default_factory=dict)
    profile_ids: list[tuple[str, str]] = field(default_factory=list)
    traits: dict[tuple[int, str, str], TraitRecord] = field(default_factory=dict)
    memberships: set[tuple[int, str]] = field(default_factory=set)


_Key = tuple[float, str, str]


def _min_opt(a: _Key, b: _Key | None) -> _Key:
    return a if b is None or a < b else b


def _max_opt(a: _Key | None, b: _Key | None) -> _Key | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if a > b else b


def plan_changes(updates: list[ProfileUpdate], known: Mapping[str, tuple[int, int]],
                 facts: Mapping[int, ClusterFacts], next_cid: int) -> tuple[Plan, int]:
    """:func:`plan_chunk` with cluster numbers handed out from ``next_cid`` on, and without
    the clusters whose facts it leaves as stored (nothing to rewrite): the plan a backend
    writes, and the next free cluster number after it."""
    counter = next_cid

    def new_cid() -> int:
        nonlocal counter
        counter += 1
        return counter - 1

    plan = plan_chunk(updates, known, facts, new_cid)
    for cid in [c for c, f in plan.clusters.items() if facts.get(c) == f]:
        del plan.clusters[cid]  # unchanged: skip the rewrite
    return plan, counter


def plan_chunk(
    updates: list[ProfileUpdate],
    known: Mapping[str, tuple[int, int]],
    facts: Mapping[int, ClusterFacts],
    new_cid: Callable[[], int],
) -> Plan:
    """Plan the effect of ``updates`` on the loaded state.

    ``known`` maps every already stored identity the chunk mentions to ``(cid, is_user)``;
    ``facts`` holds the stored :class:`ClusterFacts` of those clusters; ``new_cid`` allocates a
    cluster number for a profile made only of new identities.
    """
    # 1. Union-find over this chunk's nodes: stored clusters (int) and new identities (str).
    parent: dict[int | str, int | str] = {}

    def find(node: int | str) -> int | str:
        root = parent.get(node)
        if root is None:
            parent[node] = node
            return node
        if root == node:
            return node
        while (up := parent[root]) != root:
            root = up
        while node != root:  # path compression
            parent[node], node = root, parent[node]
        return root

    def node_of(identity: str) -> int | str:
        stored = known.get(identity)
        return identity if stored is None else stored[0]

    for update in updates:
        ids = update.ids
        first = find(node_of(ids[0]))
        for identity in ids[1:]:
            other = find(node_of(identity))
            if other != first:
                parent[other] = first

    # 2. One surviving cluster per component: the largest stored one (union by size), else new.
    components: dict[int | str, list[int | str]] = {}
    for node in list(parent):
        root = find(node)
        members = components.get(root)
        if members is None:
            components[root] = [node]
        else:
            members.append(node)

    plan = Plan()
    clusters = plan.clusters
    cid_of_root: dict[int | str, int] = {}
    for root, nodes in components.items():
        if len(nodes) == 1:  # fast path: the common case of no merge
            node = nodes[0]
            if type(node) is int:
                cid_of_root[root] = node
                clusters[node] = facts[node]
            else:
                cid = cid_of_root[root] = new_cid()
                clusters[cid] = ClusterFacts(1, None, None)  # type: ignore[arg-type] - canon: step 4
            continue
        stored = [n for n in nodes if type(n) is int]
        if len(stored) == 1:  # new identities joining one stored profile: no merge
            survivor = stored[0]
            size, canon, uid = facts[survivor]
            size += len(nodes) - 1
        elif stored:
            stored.sort(key=lambda c: (-facts[c].size, c))
            survivor = stored[0]
            size = sum(facts[c].size for c in stored) + len(nodes) - len(stored)
            canon = min(facts[c].canon for c in stored)
            uid = None
            for c in stored:
                uid = _max_opt(uid, facts[c].uid)
            plan.absorbed.extend((c, survivor) for c in stored[1:])
        else:
            survivor = new_cid()
            size, canon, uid = len(nodes), None, None
        cid_of_root[root] = survivor
        clusters[survivor] = ClusterFacts(size, canon, uid)  # type: ignore[arg-type] - step 4

    # 3. Identities: new ones join their survivor; is_user is a one-way flag (OR).
    users = {u.user_id for u in updates if u.user_id is not None}
    plan.new_identities = [
        (node, cid_of_root[root], int(node in users))
        for root, nodes in components.items()
        for node in nodes
        if isinstance(node, str)  # a new identity (a str, or a str subclass); stored ones are ints
    ]
    plan.promoted_users = sorted(i for i in users if i in known and not known[i][1])

    # 4. Per-event joins: canon (min), user id (max), traits and memberships (max / union).
    canon_cand: dict[int, tuple[float, str, str]] = {}
    uid_cand: dict[int, tuple[float, str, str]] = {}
    traits = plan.traits
    for update in updates:
        ids = update.ids
        cid = cid_of_root[find(node_of(ids[0]))]
        t, mid = update.time, update.message_id
        key = (t, mid, ids[0]) if len(ids) == 1 else (t, mid, min(ids))
        best = canon_cand.get(cid)
        if best is None or key < best:
            canon_cand[cid] = key
        if update.user_id is not None:
            key = (t, mid, update.user_id)
            prev = uid_cand.get(cid)
            if prev is None or key > prev:
                uid_cand[cid] = key
        scope = PROFILE_SCOPE
        if update.group_id is not None:
            scope = update.group_id
            plan.memberships.add((cid, scope))
        if update.traits:
            _merge_traits(traits, cid, scope, update)

    # 5. Fold the candidates into the survivors' facts; note profile ids that appear.
    for cid, cand in canon_cand.items():
        current = clusters[cid]
        canon = _min_opt(cand, current.canon)
        uid = _max_opt(current.uid, uid_cand.get(cid))
        if canon != current.canon:
            plan.profile_ids.append((profile_id_for(canon[2]), canon[2]))
        if canon != current.canon or uid != current.uid:
            clusters[cid] = ClusterFacts(current.size, canon, uid)
    return plan


def _merge_traits(
    traits: dict[tuple[int, str, str], TraitRecord], cid: int, scope: str, update: ProfileUpdate
) -> None:
    seq = -1 if update.seq is None else update.seq
    source = update.source_id or ""
    t, mid = update.time, update.message_id
    for name, value in update.traits.items():
        record = (t, mid, encode_value(value), seq, source)
        key = (cid, scope, name)
        prev = traits.get(key)
        if prev is None or record > prev:
            traits[key] = record  # type: ignore[assignment]
