"""A profile as people read it, from the winners a store keeps: one shape for every backend.

The store keeps per profile its canonical identity, its chosen ``user_id``, its ids, its
group memberships and the winning record of each trait (tombstones included, value JSON
``null``); this turns them into what ``GET /api/people/{id}`` shows.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from .merge import NULL_JSON, PROFILE_SCOPE, profile_id_for
from .timestamps import format_timestamp

#: One stored trait winner: (gid, name, time, messageId, value JSON, seq, source_id).
TraitRow = tuple[str, str, float, str, str, int | None, str | None]


def profile_view(canon: str, user_id: str | None, identities: Iterable[tuple[str, bool]],
                 groups: Iterable[str], traits: Iterable[TraitRow]) -> dict[str, Any]:
    """``{"id", "user_id", "user_ids", "anonymous_ids", "traits", "trait_times",
    "trait_sources", "cleared_traits", "groups"}``. ``identities`` are (id, is a user id)
    in id order, ``groups`` the group ids in order, ``traits`` in (gid, name) order."""
    user_ids: list[str] = []
    anonymous_ids: list[str] = []
    for identity, is_user in identities:
        (user_ids if is_user else anonymous_ids).append(identity)
    values: dict[str, Any] = {}
    trait_times: dict[str, str] = {}
    trait_sources: dict[str, dict[str, Any]] = {}
    cleared: dict[str, str] = {}
    memberships: dict[str, dict[str, Any]] = {gid: {} for gid in groups}
    for gid, name, t, mid, value, seq, source_id in traits:
        if gid != PROFILE_SCOPE:
            if value != NULL_JSON:
                memberships.setdefault(gid, {})[name] = msgspec.json.decode(value)
            continue
        if value == NULL_JSON:
            cleared[name] = format_timestamp(t)
            continue
        values[name] = msgspec.json.decode(value)
        trait_times[name] = format_timestamp(t)
        trait_sources[name] = {"messageId": mid, "seq": seq, "source_id": source_id}
    return {
        "id": profile_id_for(canon),
        "user_id": user_id,
        "user_ids": user_ids,
        "anonymous_ids": anonymous_ids,
        "traits": values,
        "trait_times": trait_times,
        "trait_sources": trait_sources,
        "cleared_traits": cleared,
        "groups": memberships,
    }


def profile_views(heads: Iterable[tuple[int, str, str | None]],
                  identities: Iterable[tuple[int, str, bool]],
                  groups: Iterable[tuple[int, str]],
                  traits: Iterable[tuple[int, *TraitRow]]) -> dict[int, dict[str, Any]]:
    """:func:`profile_view` of many profiles read together, each row led by its
    profile's number (``cid``): ``heads`` (cid, canon, user_id), the others in the order
    :func:`profile_view` takes within a profile. Why: a build or a preview resolves every
    person, and four queries per profile were most of it (100,000 profiles: 5.4 s)."""
    ids: dict[int, list[tuple[str, bool]]] = {}
    for cid, identity, is_user in identities:
        ids.setdefault(cid, []).append((identity, bool(is_user)))
    gids: dict[int, list[str]] = {}
    for cid, gid in groups:
        gids.setdefault(cid, []).append(gid)
    rows: dict[int, list[TraitRow]] = {}
    for cid, gid, name, t, mid, value, seq, source_id in traits:
        rows.setdefault(cid, []).append((gid, name, t, mid, value, seq, source_id))
    return {cid: profile_view(canon, user_id, ids.get(cid, ()), gids.get(cid, ()),
                              rows.get(cid, ()))
            for cid, canon, user_id in heads}
