"""A condition over all of event time at once: its value before any data and the sorted
times at which it flips.

Why: :meth:`Evaluator.membership` used to collect every breakpoint of a definition and
evaluate the whole condition tree at each of them, a few dozen microseconds per person
and segment; a build evaluates a hundred thousand people for ten segments. A step
function per leaf (a trait: one flip when it was set; an event count: where the count
crosses ``at_least`` / ``at_most``, with ``within`` windows as +1 / -1 at each event and
when it leaves) combined by merging flip lists (``all``, ``any``) or negating the start
(``not``) gives the same answer in one pass over the person's times. The breakpoint
walk stays as the reference (:meth:`Evaluator.membership_by_points`) that a property
test compares this with.
"""

from __future__ import annotations

from collections.abc import Mapping

from .definition import AllOf, AnyOf, Condition, EventCondition, NotOf, TraitCondition

#: (value before any data, the sorted distinct times at which the value flips).
Steps = tuple[bool, list[int]]


def _flips_of_counts(initial_ok: bool, changes: list[tuple[int, int]],
                     cond: EventCondition) -> list[int]:
    """The flips of ``at_least <= count <= at_most`` given ``(time, delta)`` changes
    sorted by time (all the changes at one time apply together)."""
    at_least, at_most = cond.at_least, cond.at_most
    flips: list[int] = []
    value, count, i, n = initial_ok, 0, 0, len(changes)
    while i < n:
        t = changes[i][0]
        while i < n and changes[i][0] == t:
            count += changes[i][1]
            i += 1
        now = count >= at_least and (at_most is None or count <= at_most)
        if now != value:
            flips.append(t)
            value = now
    return flips


def event_steps(cond: EventCondition, times: list[int]) -> Steps:
    """``times``: the times of the events ``cond`` matches, sorted (any range)."""
    initial = cond.at_least == 0  # a count of 0 passes at_most always
    if cond.between_ms is not None:
        start, end = cond.between_ms
        times = [t for t in times if start <= t < end]
    if cond.within_ms is None:
        # The count only grows: it reaches at_least at the at_least-th time and passes
        # at_most at the (at_most + 1)-th; both at one time cancel out.
        n, at_least, at_most = len(times), cond.at_least, cond.at_most
        enter = times[at_least - 1] if 1 <= at_least <= n else None
        leave = times[at_most] if at_most is not None and at_most < n else None
        if enter is not None and enter == leave:
            return initial, []
        return initial, [t for t in (enter, leave) if t is not None]
    w = cond.within_ms
    changes = sorted([(t, 1) for t in times] + [(t + w, -1) for t in times])
    return initial, _flips_of_counts(initial, changes, cond)


def combine(parts: list[Steps], want_all: bool) -> Steps:
    """``all`` (``want_all``) or ``any`` of step functions."""
    values = [v for v, _ in parts]
    agg = all if want_all else any
    initial = agg(values)
    points = sorted({t for _, flips in parts for t in flips})
    if not points:
        return initial, []
    cursors = [0] * len(parts)
    flips: list[int] = []
    value = initial
    for t in points:
        for k, (_, part) in enumerate(parts):
            c = cursors[k]
            while c < len(part) and part[c] <= t:
                values[k] = not values[k]
                c += 1
            cursors[k] = c
        now = agg(values)
        if now != value:
            flips.append(t)
            value = now
    return initial, flips


class StepEvaluator:
    """Step functions of conditions for one person's facts (``facts``: a
    :class:`~.evaluate.PersonFacts`); ``in_segment`` resolves through ``definitions``
    (cycles are refused when definitions are saved), memoised per key.

    ``lean``: the value a trait leaf takes before the update that set the trait's
    current value, when nothing says what it was then (see ``trait_steps``): False
    (pessimistic) makes a condition true only where it is true whatever the trait was
    before; True (optimistic), false only where it is false whatever it was. Under
    ``not`` the lean is reversed, so it always pushes the whole condition the same way.
    :attr:`assumed` tells whether any leaf took it (else both leans give the same)."""

    def __init__(self, definitions: Mapping[str, Condition], facts, trait_value) -> None:
        self.definitions = definitions
        self.facts = facts
        self._trait_value = trait_value
        #: (key, lean) -> its steps, and whether a trait leaf took the lean in them.
        self._segments: dict[tuple[str, bool], tuple[Steps, bool]] = {}
        self.assumed = False

    def steps(self, cond: Condition, lean: bool = False) -> Steps:
        if isinstance(cond, EventCondition):
            return event_steps(cond, self.facts.matching(cond)[0])
        if isinstance(cond, TraitCondition):
            found, assumed = self._trait_value(cond, self.facts, lean)
            self.assumed = self.assumed or assumed
            return found
        if isinstance(cond, AllOf):
            return combine([self.steps(c, lean) for c in cond.conditions], True)
        if isinstance(cond, AnyOf):
            return combine([self.steps(c, lean) for c in cond.conditions], False)
        if isinstance(cond, NotOf):
            value, flips = self.steps(cond.condition, not lean)
            return not value, flips
        memo = self._segments.get((cond.key, lean))
        if memo is None:
            other = self.definitions.get(cond.key)
            outer, self.assumed = self.assumed, False
            found = (False, []) if other is None else self.steps(other, lean)
            memo = self._segments[(cond.key, lean)] = (found, self.assumed)
            self.assumed = outer
        self.assumed = self.assumed or memo[1]
        return memo[0]
