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


class _Cleared:
    """The value of a trait an update cleared (``null``), at that update's time."""

    def __repr__(self) -> str:
        return "CLEARED"


#: See :class:`_Cleared`: unlike a trait never set, a cleared one has a time, the moment
#: a condition on it may change.
CLEARED: Any = _Cleared()


def trait_of(traits: Mapping[str, tuple[Any, int]], name: str) -> tuple[Any, int] | None:
    """The trait ``name`` with the time that set it (the value :data:`CLEARED` when an
    update cleared it), or None (never set). A name with dots that no trait has whole is
    a path into an object trait (``address.city``: the ``city`` of the ``address``, as
    FQL reads ``traits.address.city``), with the time of the update that set the object;
    a ``null`` on the way, or at the end, is not set.

    Why both: traits are the profile's top-level keys, and a trait may have a dot in its
    own name (``utm.source`` sent flat), so the whole name is tried first."""
    found = traits.get(name)
    if found is not None or "." not in name:
        return found
    for head, rest in _splits(name):
        top = traits.get(head)
        if top is not None:
            value = CLEARED if top[0] is CLEARED else _dig(top[0], rest)
            if value is not None:
                return value, top[1]
    return None


def trait_roots(name: str) -> set[str]:
    """The traits whose update may change the trait ``name`` (itself and, for a path,
    every object trait it may start in)."""
    return {name, *(head for head, _ in _splits(name))}


def _splits(path: str) -> Iterable[tuple[str, str]]:
    """``path`` cut at each dot: ``a.b.c`` gives (``a``, ``b.c``) and (``a.b``, ``c``)."""
    return ((path[:i], path[i + 1:]) for i, char in enumerate(path) if char == ".")


def _dig(value: Any, path: str) -> Any:
    """``path`` inside ``value`` (None: not there), each key whole first, as at the top."""
    if not isinstance(value, dict):
        return None
    if path in value:
        return value[path]
    for head, rest in _splits(path):
        if head in value:
            found = _dig(value[head], rest)
            if found is not None:
                return found
    return None


def traits_of(profile: Mapping[str, Any] | None) -> dict[str, tuple[Any, int]]:
    """A profile's traits with the time each was set (:data:`DAWN`: unknown), and those
    an update cleared, as :data:`CLEARED` at that update's time."""
    from millpond.timeutil import parse_iso_ms
    traits: dict[str, tuple[Any, int]] = {}
    if profile:
        times = profile.get("trait_times", {})
        for name, value in profile.get("traits", {}).items():
            traits[name] = (value, parse_iso_ms(times[name]) if name in times else DAWN)
        for name, at in (profile.get("cleared_traits") or {}).items():
            traits.setdefault(name, (CLEARED, parse_iso_ms(at)))
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

    def at(self, cond: Condition, person: PersonFacts, t: int, lean: bool = False) -> bool:
        """``cond`` at event time ``t``; ``lean``: what a trait reads as before the update
        that set its current value (False: true only if true whatever it was then; see
        :class:`~.steps.StepEvaluator`)."""
        if isinstance(cond, TraitCondition):
            found = trait_of(person.traits, cond.trait)
            if found is None:
                return trait_matches(cond, None, False)
            if found[1] > t:
                return lean
            return trait_matches(cond, None, False) if found[0] is CLEARED else \
                trait_matches(cond, found[0], True)
        if isinstance(cond, EventCondition):
            return _count_ok(cond, self.count(cond, person, t))
        if isinstance(cond, AllOf):
            return all(self.at(c, person, t, lean) for c in cond.conditions)
        if isinstance(cond, AnyOf):
            return any(self.at(c, person, t, lean) for c in cond.conditions)
        if isinstance(cond, NotOf):
            return not self.at(cond.condition, person, t, not lean)
        other = self.definitions.get(cond.key)
        return other is not None and self.at(other, person, t, lean)

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
            found = trait_of(person.traits, cond.trait)
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
        (``stepper``: :meth:`stepper` of ``person``, shared by their segments).

        Why two leans where a trait is read: a profile keeps each trait's current value
        and the time of the update that set it, not the values before. A member is one
        for whom the condition holds whatever those were (the pessimistic lean), since
        the moment that became so. A non-member's state, though, began when the
        condition became false whatever they were (the optimistic lean): someone whose
        plan went from "pro" to "free" yesterday left a "plan is pro" segment yesterday,
        not when they were first seen, so their Audience Exited is not skipped as years
        old by a destination's trigger window."""
        stepper = stepper or self.stepper(person)
        stepper.assumed = False
        initial, flips = stepper.steps(cond)
        member, since, next_change = _at_now(initial, flips, now, person)
        if stepper.assumed and not member:
            sure, sure_since, sure_next = _at_now(*stepper.steps(cond, True), now, person)
            if not sure:
                since = sure_since
            next_change = _earliest(next_change, sure_next)
        return Membership(member, since, next_change)

    def membership_by_points(self, cond: Condition, person: PersonFacts,
                             now: int) -> Membership:
        """:meth:`membership` the slow, obvious way: evaluate the whole condition at each
        breakpoint, in both leans. The reference the property tests compare
        :meth:`membership` with."""
        member, since, next_change = self._walk(cond, person, now, False)
        if not member:
            sure, sure_since, sure_next = self._walk(cond, person, now, True)
            if not sure:
                since = sure_since
            next_change = _earliest(next_change, sure_next)
        return Membership(member, since, next_change)

    def _walk(self, cond: Condition, person: PersonFacts, now: int,
              lean: bool) -> tuple[bool, int | None, int | None]:
        points = sorted(self.breakpoints(cond, person))
        cut = bisect.bisect_right(points, now)
        state = self.at(cond, person, DAWN, lean)
        since = person.first_seen()
        for t in points[:cut]:
            value = self.at(cond, person, t, lean)
            if value != state:
                state, since = value, t
        next_change = None
        for t in points[cut:]:
            if self.at(cond, person, t, lean) != state:
                next_change = t
                break
        return state, since, next_change

    # -- why ------------------------------------------------------------------------------

    def why(self, cond: Condition, person: PersonFacts, now: int,
            events_shown: int = 20) -> dict[str, Any]:
        """Each condition with its value at ``now``: the trait's value and the time that
        set it, the matching event count and the events (their seqs), and the matching
        events that do not count at ``now`` with the window they are outside of."""
        out: dict[str, Any]
        if isinstance(cond, TraitCondition):
            found = trait_of(person.traits, cond.trait)
            if found is not None and found[1] > now:
                found = None  # set later than the moment asked about
            out = {"trait": cond.trait, "op": cond.op}
            if cond.op not in ("exists", "not_exists"):
                out["value"] = cond.value
            out["actual"] = found[0] if found is not None and found[0] is not CLEARED \
                else None
            out["set_at"] = format_ms(found[1]) if found is not None and found[1] != DAWN \
                else None
        elif isinstance(cond, EventCondition):
            counted: list[tuple[int, int]] = []
            left: list[tuple[int, int]] = []
            for t, s in zip(*person.matching(cond), strict=True):
                (counted if _counts(cond, t, now) else left).append((t, s))
            out = {"event": cond.event, "where": cond.where, "at_least": cond.at_least,
                   "at_most": cond.at_most, "count": len(counted),
                   "events": _shown(counted[-events_shown:]),
                   # Matching events that do not count now: outside the window, or later
                   # than the moment asked about. Without them, a person with a purchase
                   # 2 minutes ago reads "0 counted" in a "within 1m" segment, unexplained.
                   "not_counted": len(left), "not_counted_events": _shown(left[-events_shown:])}
            if cond.within_ms is not None:
                out["window"] = {"after": format_ms(now - cond.within_ms),
                                 "until": format_ms(now)}
            elif cond.between_ms is not None:
                out["window"] = {"from": format_ms(cond.between_ms[0]),
                                 "before": format_ms(cond.between_ms[1])}
        elif isinstance(cond, (AllOf, AnyOf)):
            kind = "all" if isinstance(cond, AllOf) else "any"
            out = {kind: [self.why(c, person, now, events_shown) for c in cond.conditions]}
        elif isinstance(cond, NotOf):
            out = {"not": self.why(cond.condition, person, now, events_shown)}
        else:
            # Since when the other segment's answer is what it is (event time): "in vip"
            # alone does not tell yesterday's member from one of two years.
            other = self.definitions.get(cond.key)
            since = self.membership(other, person, now).since_ms if other is not None else None
            out = {"in_segment": cond.key,
                   "since": format_ms(since) if since is not None else None}
        out["result"] = self.at(cond, person, now)
        return out


def trait_steps(cond: TraitCondition, person: PersonFacts,
                lean: bool = False) -> tuple[tuple[bool, list[int]], bool]:
    """A trait condition over event time: its value before the update that set the
    trait (its ``_timestamp``), and the moment it flips then, if it does; and whether it
    took ``lean`` for "before" (the trait's earlier values are not kept, so before that
    update it reads as ``lean``; see :class:`~.steps.StepEvaluator`). A trait never set
    is not set all along; one set at no known time, set since before any data; a
    cleared one is not set from its clearing on."""
    found = trait_of(person.traits, cond.trait)
    if found is None:
        return (trait_matches(cond, None, False), []), False
    present = trait_matches(cond, None, False) if found[0] is CLEARED else \
        trait_matches(cond, found[0], True)
    if found[1] == DAWN:
        return (present, []), False
    return (lean, [found[1]] if present != lean else []), True


def _at_now(initial: bool, flips: list[int], now: int,
            person: PersonFacts) -> tuple[bool, int | None, int | None]:
    """A step function at ``now``: its value, since when, and its next flip."""
    cut = bisect.bisect_right(flips, now)
    since = flips[cut - 1] if cut else person.first_seen()
    return initial != (cut % 2 == 1), since, flips[cut] if cut < len(flips) else None


def _earliest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _shown(events: list[tuple[int, int]]) -> list[dict[str, Any]]:
    return [{"seq": seq, "timestamp": format_ms(ts)} for ts, seq in events]


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
