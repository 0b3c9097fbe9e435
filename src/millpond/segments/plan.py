"""Each segment compiled once per pass: what it looks at, and its value without data.

Why: a build evaluates a hundred thousand people for ten segments, and the follower
re-evaluates every person a tick's events touch. Most (person, segment) pairs involve
none of the data the segment looks at, and most live events concern few segments. A
:class:`SegmentPlan` knows, for one segment (through ``in_segment`` too), the scan slots
of its event conditions, the event names and traits it reads, and its value for a
person with none of that data, so :func:`memberships` answers those pairs without
building step functions, and :meth:`SegmentPlan.unaffected` tells the follower which
segments an event cannot change for a person.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from millpond.storage.models import Member, Segment

from .definition import Condition
from .evaluate import Evaluator, Membership, PersonFacts
from .scan import LogScan, event_conditions, trait_names


class SegmentPlan(msgspec.Struct):
    """``slots``: indices in the scan's conditions; ``names``: the event names its
    conditions count; ``traits``: the traits it reads; ``empty``: its value for a person
    with none of those (before any data and ever after: no flips)."""

    segment: Segment
    condition: Condition
    slots: tuple[int, ...]
    names: frozenset[str]
    traits: frozenset[str]
    empty: bool

    def unaffected(self, touched: Touched | None, stored: Member | None) -> bool:
        """Whether the events ``touched`` sums up (None: an identify, alias or group,
        which may change traits and merge people) leave this person's state in this
        segment as it is stored (``stored``: their row, None when they have none).

        Why this is exact: without traits, a segment's value before any data is
        ``empty`` for everyone, and it flips only at the times of the events it counts;
        an event of another name changes neither. What it can change is the person's
        first event time, the ``since`` of a state held since before any flip: a stored
        ``since`` at or before the earliest touching event stays (it is that first time,
        or a flip's), and so does a state other than ``empty``'s (it began at a flip).
        Without a row, the person was a non-member with nothing scheduled (``empty``
        false: still so) or is new (``empty`` true: a member now); so with a row stored
        when they had no data left (``since`` None: retention or a deletion took every
        event of theirs, :data:`NOBODY`), whose state began at no flip."""
        if touched is None or self.traits or not self.names.isdisjoint(touched.names):
            return False
        if stored is None or stored.since_ms is None:
            return not self.empty
        # A state other than the one before any data began at a flip.
        return stored.member != self.empty or (
            stored.since_ms is not None and stored.since_ms <= touched.earliest)


class Touched:
    """What a tick's events did to one person: the names of their track events (page,
    screen: none) and the earliest event time among them."""

    __slots__ = ("names", "earliest")

    def __init__(self, names: set[str], earliest: int) -> None:
        self.names = names
        self.earliest = earliest

    def add(self, name: str | None, ts: int) -> None:
        if name:
            self.names.add(name)
        self.earliest = min(self.earliest, ts)

    def merge(self, other: Touched) -> None:
        self.names |= other.names
        self.earliest = min(self.earliest, other.earliest)


def compile_plans(evaluator: Evaluator, definitions: Mapping[str, Condition],
                  segments: Sequence[Segment], scan: LogScan) -> list[SegmentPlan]:
    """The plans of ``segments`` over the slots of ``scan`` (made with
    :func:`~.scan.event_conditions` of these segments, so every condition has a slot)."""
    slot_of = {id(cond): i for i, cond in enumerate(scan.conditions)}
    out = []
    for segment in segments:
        condition = definitions[segment.key]
        conds = event_conditions(definitions, [segment.key])
        empty = evaluator.membership(condition, PersonFacts({}, ()), 0).member
        out.append(SegmentPlan(segment, condition, tuple(slot_of[id(c)] for c in conds),
                               frozenset(c.event for c in conds),
                               frozenset(trait_names(definitions, segment.key)), empty))
    return out


#: The membership of a person with no data at all.
NOBODY = Membership(False, None, None)


def memberships(evaluator: Evaluator, plans: Sequence[SegmentPlan], scan: LogScan,
                ids: Sequence[str], profile: Mapping[str, Any] | None,
                now: int) -> list[Membership]:
    """The person's membership in each plan's segment at ``now``, from what ``scan``
    gathered of ``ids``; the full evaluation only where the person has data the segment
    looks at."""
    first, merged = scan.gather(ids)
    if first is None and not profile:
        # No event left and no profile (retention or a deletion took them all): nobody
        # to be a member, even of a segment true before any data ("not" an event), as a
        # build over the log as it is now would not know them.
        return [NOBODY] * len(plans)
    facts = stepper = None
    # A cleared trait is data too: the time a condition on it may change.
    traits = {*(profile.get("traits") or {}), *(profile.get("cleared_traits") or {})} \
        if profile else set()
    out = []
    for plan in plans:
        if any(merged[i] for i in plan.slots) or (
                plan.traits and not plan.traits.isdisjoint(traits)):
            if facts is None:
                facts = scan.facts_of(first, merged, profile)
            if stepper is None:
                stepper = evaluator.stepper(facts)
            out.append(evaluator.membership(plan.condition, facts, now, stepper))
            continue
        if profile:
            if facts is None:
                facts = scan.facts_of(first, merged, profile)
            since = facts.first_seen()
        else:
            since = first
        out.append(Membership(plan.empty, since, None))
    return out
