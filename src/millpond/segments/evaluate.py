"""Membership as a pure function of one person's data and a moment in event time.

Why event time all the way down: a person's membership must depend only on their merged
profile and the *set* of their events, never on the order those arrived in, so a
backfill of two-year-old purchases puts people in a segment exactly as if the purchases
had arrived two years ago. Every condition is therefore evaluated *at* an event time
``t``: an event counts once it has happened (``ts <= t``) and, with ``within``, until
the window passes it; a trait counts once the update that set it happened (its
``_timestamp``, see :mod:`millpond.profiles`).

Membership is a step function of ``t`` that can only change at a *breakpoint*: an
event's time, the moment it leaves a ``within`` window, a ``between`` bound, a trait's
time. :meth:`Evaluator.membership` walks those points, so it knows both the event time
at which the current membership began (the ``timestamp`` of the ``Audience Entered`` /
``Exited`` event) and the next moment it will change by time passing alone (the
scheduler's wake-up), with no clock but the ``now`` it is given.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

import msgspec

from millpond.timeutil import format_ms

from .definition import (
    AllOf,
    AnyOf,
    Condition,
    EventCondition,
    NotOf,
    TraitCondition,
)
from .steps import StepEvaluator

#: Event time before everything: the state of a person before any of their data.
DAWN = -(2**62)
#: The built-in source whose events (Audience Entered / Exited) never count in event
#: conditions: a segment on another one says so with ``in_segment``, and a segment can
#: never feed on its own outputs.
COMPUTED_SOURCE = "computed"


class PersonFacts:
    """What membership may depend on: the merged profile's traits with the time each was
    set, and the person's events in event-time order."""

    __slots__ = ("traits", "events", "_ts", "_matches")

    def __init__(self, traits: Mapping[str, tuple[Any, int]],
                 events: Iterable[tuple[int, int, Mapping[str, Any]]]) -> None:
        self.traits = dict(traits)
        self.events = sorted(((ts, seq, e) for ts, seq, e in events
                              if e.get("source_id") != COMPUTED_SOURCE),
                             key=lambda item: (item[0], item[1]))
        self._matches: dict[int, tuple[list[int], list[int]]] = {}

    @classmethod
    def from_profile(cls, profile: Mapping[str, Any] | None,
                     events: Iterable[tuple[int, int, Mapping[str, Any]]]) -> PersonFacts:
        """From a profile as :meth:`ProfileStore.get` returns it (or None) and
        ``(ts_ms, seq, event)`` triples."""
        return cls(traits_of(profile), events)

    def first_seen(self) -> int | None:
        times = [t for _, t in self.traits.values() if t != DAWN]
        if self.events:
            times.append(self.events[0][0])
        return min(times) if times else None

    def matching(self, cond: EventCondition) -> tuple[list[int], list[int]]:
        """Times and seqs of the events ``cond`` counts (any time), in time order."""
        key = id(cond)
        found = self._matches.get(key)
        if found is None:
            trigger = cond.trigger()
            times: list[int] = []
            seqs: list[int] = []
            for ts, seq, event in self.events:
                if event.get("type") == "track" and event.get("event") == cond.event and (
                        trigger is None or trigger.matches(event)):
                    times.append(ts)
                    seqs.append(seq)
            found = self._matches[key] = (times, seqs)
        return found


def traits_of(profile: Mapping[str, Any] | None) -> dict[str, tuple[Any, int]]:
    """A profile's traits with the time each was set (:data:`DAWN`: unknown)."""
    from millpond.timeutil import parse_iso_ms
    traits: dict[str, tuple[Any, int]] = {}
    if profile:
        times = profile.get("trait_times", {})
        for name, value in profile.get("traits", {}).items():
            traits[name] = (value, parse_iso_ms(times[name]) if name in times else DAWN)
    return traits


class Membership(msgspec.Struct, frozen=True):
    """``member`` at ``now``; ``since_ms``: the event time the current state began (None:
    the person has no data); ``next_change_ms``: when time passing alone changes it."""

    member: bool
    since_ms: int | None
    next_change_ms: int | None


class Evaluator:
    """Evaluates conditions; ``definitions`` resolves ``in_segment`` keys (cycles are
    refused when definitions are saved, :func:`~.definition.check_references`)."""

    def __init__(self, definitions: Mapping[str, Condition] | None = None) -> None:
        self.definitions = definitions or {}

    # -- at one moment ------------------------------------------------------------------

    def at(self, cond: Condition, person: PersonFacts, t: int) -> bool:
        if isinstance(cond, TraitCondition):
            found = person.traits.get(cond.trait)
            if found is None or found[1] > t:
                return trait_matches(cond, None, False)
            return trait_matches(cond, found[0], True)
        if isinstance(cond, EventCondition):
            return _count_ok(cond, self.count(cond, person, t))
        if isinstance(cond, AllOf):
            return all(self.at(c, person, t) for c in cond.conditions)
        if isinstance(cond, AnyOf):
            return any(self.at(c, person, t) for c in cond.conditions)
        if isinstance(cond, NotOf):
            return not self.at(cond.condition, person, t)
        other = self.definitions.get(cond.key)
        return other is not None and self.at(other, person, t)

    def count(self, cond: EventCondition, person: PersonFacts, t: int) -> int:
        """How many of the person's events ``cond`` counts at event time ``t``."""
        times, _ = person.matching(cond)
        hi = bisect.bisect_right(times, t)
        lo = 0
        if cond.within_ms is not None:
            lo = bisect.bisect_right(times, t - cond.within_ms)
        elif cond.between_ms is not None:
            start, end = cond.between_ms
            lo = bisect.bisect_left(times, start)
            hi = min(hi, bisect.bisect_left(times, end))
        return max(0, hi - lo)

    # -- over time --------------------------------------------------------------------------

    def breakpoints(self, cond: Condition, person: PersonFacts,
                    _seen: frozenset[str] = frozenset()) -> set[int]:
        """Every event time at which ``cond`` may change for this person."""
        if isinstance(cond, TraitCondition):
            found = person.traits.get(cond.trait)
            return {found[1]} if found and found[1] != DAWN else set()
        if isinstance(cond, EventCondition):
            times, _ = person.matching(cond)
            points = set(times)
            if cond.within_ms is not None:
                points.update(ts + cond.within_ms for ts in times)
            if cond.between_ms is not None and times:
                points.update(cond.between_ms)
            return points
        if isinstance(cond, (AllOf, AnyOf)):
            return set().union(*(self.breakpoints(c, person, _seen) for c in cond.conditions))
        if isinstance(cond, NotOf):
            return self.breakpoints(cond.condition, person, _seen)
        other = self.definitions.get(cond.key)
        if other is None or cond.key in _seen:
            return set()
        return self.breakpoints(other, person, _seen | {cond.key})

    def steps(self, cond: Condition, person: PersonFacts):
        """``cond`` over all of event time: its value before any data and the times it
        flips at (:mod:`.steps`)."""
        return StepEvaluator(self.definitions, person, trait_steps).steps(cond)

    def stepper(self, person: PersonFacts) -> StepEvaluator:
        """A step evaluator for ``person``, to share among their segments (it remembers
        the ``in_segment`` ones it worked out)."""
        return StepEvaluator(self.definitions, person, trait_steps)

    def membership(self, cond: Condition, person: PersonFacts, now: int,
                   stepper: StepEvaluator | None = None) -> Membership:
        """Membership at ``now``, since when (event time), and the next change by time
        (``stepper``: :meth:`stepper` of ``person``, shared by their segments)."""
        initial, flips = (stepper or self.stepper(person)).steps(cond)
        cut = bisect.bisect_right(flips, now)
        state = initial != (cut % 2 == 1)
        since = flips[cut - 1] if cut else person.first_seen()
        return Membership(state, since, flips[cut] if cut < len(flips) else None)

    def membership_by_points(self, cond: Condition, person: PersonFacts,
                             now: int) -> Membership:
        """:meth:`membership` the slow, obvious way: evaluate the whole condition at each
        breakpoint. The reference the property tests compare :meth:`membership` with."""
        points = sorted(self.breakpoints(cond, person))
        cut = bisect.bisect_right(points, now)
        state = self.at(cond, person, DAWN)
        since = person.first_seen()
        for t in points[:cut]:
            value = self.at(cond, person, t)
            if value != state:
                state, since = value, t
        next_change = None
        for t in points[cut:]:
            if self.at(cond, person, t) != state:
                next_change = t
                break
        return Membership(state, since, next_change)

    def history(self, cond: Condition, person: PersonFacts, now: int) -> list[tuple[bool, int]]:
        """Every change of membership up to ``now``: ``(member, event time)``, oldest first
        (the Audience Entered / Exited a from-scratch computation emits)."""
        state, flips = self.steps(cond, person)
        changes: list[tuple[bool, int]] = []
        if state:
            first = person.first_seen()
            changes.append((True, DAWN if first is None else first))
        for t in flips:
            if t > now:
                break
            state = not state
            changes.append((state, t))
        return changes

    # -- why ------------------------------------------------------------------------------

    def why(self, cond: Condition, person: PersonFacts, now: int,
            events_shown: int = 20) -> dict[str, Any]:
        """Each condition with its value at ``now``: the trait's value and the time that
        set it, the matching event count and the events (their seqs)."""
        out: dict[str, Any]
        if isinstance(cond, TraitCondition):
            found = person.traits.get(cond.trait)
            if found is not None and found[1] > now:
                found = None  # set later than the moment asked about
            out = {"trait": cond.trait, "op": cond.op}
            if cond.op not in ("exists", "not_exists"):
                out["value"] = cond.value
            out["actual"] = found[0] if found is not None else None
            out["set_at"] = format_ms(found[1]) if found is not None and found[1] != DAWN \
                else None
        elif isinstance(cond, EventCondition):
            times, seqs = person.matching(cond)
            counted = [(t, s) for t, s in zip(times, seqs, strict=True)
                       if _counts(cond, t, now)]
            out = {"event": cond.event, "where": cond.where, "at_least": cond.at_least,
                   "at_most": cond.at_most, "count": len(counted),
                   "events": [{"seq": s, "timestamp": format_ms(t)}
                              for t, s in counted[-events_shown:]]}
        elif isinstance(cond, (AllOf, AnyOf)):
            kind = "all" if isinstance(cond, AllOf) else "any"
            out = {kind: [self.why(c, person, now, events_shown) for c in cond.conditions]}
        elif isinstance(cond, NotOf):
            out = {"not": self.why(cond.condition, person, now, events_shown)}
        else:
            out = {"in_segment": cond.key}
        out["result"] = self.at(cond, person, now)
        return out


def trait_steps(cond: TraitCondition, person: PersonFacts) -> tuple[bool, list[int]]:
    """A trait condition over event time: its value before the trait was set, and the
    moment (the update's ``_timestamp``) it flips, if it does."""
    absent = trait_matches(cond, None, False)
    found = person.traits.get(cond.trait)
    if found is None:
        return absent, []
    present = trait_matches(cond, found[0], True)
    if found[1] == DAWN:  # no time known: set since before any data
        return present, []
    return absent, [found[1]] if present != absent else []


def _counts(cond: EventCondition, ts: int, t: int) -> bool:
    if ts > t:
        return False
    if cond.within_ms is not None:
        return ts > t - cond.within_ms
    if cond.between_ms is not None:
        return cond.between_ms[0] <= ts < cond.between_ms[1]
    return True


def _count_ok(cond: EventCondition, n: int) -> bool:
    return n >= cond.at_least and (cond.at_most is None or n <= cond.at_most)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def trait_matches(cond: TraitCondition, actual: Any, present: bool) -> bool:
    """One trait condition on the trait's value (``present``: the trait is set).

    ``eq`` / ``in`` are typed JSON equality (the number 1 is not the text "1"); ``ne`` is
    its negation and so holds for a missing trait; ``gt``... compare two numbers or two
    texts (ISO dates compare as text), anything else does not match; ``contains`` finds
    text in text or an item in a list."""
    op, want = cond.op, cond.value
    if op == "exists":
        return present
    if op == "not_exists":
        return not present
    if op == "eq":
        return present and _same(actual, want)
    if op == "ne":
        return not (present and _same(actual, want))
    if not present:
        return False
    if op == "in":
        return any(_same(actual, w) for w in want)
    if op == "contains":
        if isinstance(actual, str) and isinstance(want, str):
            return want in actual
        return isinstance(actual, list) and any(_same(a, want) for a in actual)
    if _number(actual) and _number(want):
        return _ordered(op, float(actual), float(want))
    if isinstance(actual, str) and isinstance(want, str):
        return _ordered(op, actual, want)
    return False


_Ordered = TypeVar("_Ordered", float, str)


def _ordered(op: str, a: _Ordered, b: _Ordered) -> bool:
    """``a <op> b`` for the ordering ops (both numbers, or both texts)."""
    return {"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[op]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if _number(a) and _number(b):
        return a == b
    return type(a) is type(b) and a == b


def evaluate_all(definitions: Mapping[str, Condition], person: PersonFacts, now: int,
                 keys: Sequence[str] | None = None) -> dict[str, Membership]:
    """Membership of ``person`` in each segment (``keys``, default all)."""
    ev = Evaluator(definitions)
    return {k: ev.membership(definitions[k], person, now) for k in (keys or definitions)}
