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
