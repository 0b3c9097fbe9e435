"""What one ``SegmentStore.apply`` writes, worked out the same for every backend: which
stored rows a merge drops, which history entries the new rows add, and the row each
(segment, person) keeps. Pure: the backends only load the stored rows and write this."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from millpond.storage.models import Member, MembershipChange

#: (segment id, person id)
Key = tuple[str, str]
#: A stored row's ``member`` and ``ids``.
Stored = tuple[bool, list[str]]


@dataclass(slots=True)
class ApplyPlan:
    gone: list[Key] = field(default_factory=list)
    """Stored rows to delete (``drop`` rows that exist)."""
    added: list[MembershipChange] = field(default_factory=list)
    """History entries, in order: each row whose ``member`` differs from the state before
    it (the stored one, or the previous row of the same batch; none: not a member)."""
    latest: dict[Key, Member] = field(default_factory=dict)
    """The row each key keeps: the last of the batch."""


def plan_apply(rows: Sequence[Member], drop: Sequence[Key],
               stored: Mapping[Key, Stored]) -> ApplyPlan:
    plan = ApplyPlan(gone=[key for key in drop if key in stored])
    dropped = set(plan.gone)
    current = {key: v[0] for key, v in stored.items() if key not in dropped}
    for row in rows:
        key = (row.segment_id, row.person_id)
        if current.get(key, False) != row.member:
            plan.added.append(MembershipChange(row.segment_id, row.person_id, row.member,
                                               row.since_ms, row.processed_ms))
        current[key] = row.member
        plan.latest[key] = row
    return plan


def replaced(plan: ApplyPlan, stored: Mapping[Key, Stored]) -> list[Key]:
    """The stored rows (not dropped) the plan writes again: their old ids are forgotten."""
    dropped = set(plan.gone)
    return [k for k in plan.latest if k in stored and k not in dropped]


@dataclass(slots=True)
class SplitRows:
    """The rows a plan keeps, by how a backend can write them."""

    moved: list[Key] = field(default_factory=list)
    """Stored rows (not dropped) written again with other ids: their ids are forgotten."""
    kept: list[Member] = field(default_factory=list)
    """Stored rows keeping their ids and ``member``: updated in place."""
    flipped: list[Member] = field(default_factory=list)
    """Stored rows keeping their ids, ``member`` changed: updated in place."""
    fresh: list[Member] = field(default_factory=list)
    """New rows and the moved ones: written whole, with their ids."""


def split_rows(plan: ApplyPlan, stored: Mapping[Key, Stored]) -> SplitRows:
    """:attr:`ApplyPlan.latest` split for writing. Why: a live tick rewrites rows that
    keep their ids (merges are rare); updating those in place, in the columns that
    change, leaves the other indexes and the id table alone."""
    dropped = set(plan.gone)
    out = SplitRows()
    for key, row in plan.latest.items():
        before = stored.get(key) if key not in dropped else None
        if before is None:
            out.fresh.append(row)
        elif tuple(before[1]) != tuple(row.ids):
            out.moved.append(key)
            out.fresh.append(row)
        elif before[0] == row.member:
            out.kept.append(row)
        else:
            out.flipped.append(row)
    return out
