"""One pass over the log that gathers, per person, exactly what membership needs.

Why a scan of its own rather than the per-person reads of :mod:`.people`: building
segments over a log of a million events of a hundred thousand people by reading each
person's events through the index costs a query and a decode per person per segment;
one sequential read of the log, feeding every segment being built at once, costs about
what a raw scan costs.

What is kept is compact and bounded, so memory follows the number of people, not the
length of the log:

- each event is decoded into a small struct (type, name, ids, source), and in full only
  when a condition on that event name has a ``where`` to match;
- per id (the event's ``userId``, else its ``anonymousId``, as the per-person index
  files events), the earliest event time (a person's ``first_seen``) and, per event
  condition, the times of the events it counts;
- a condition without ``within`` needs only its ``k`` earliest counting times, ``k =
  max(at_least, at_most + 1)``: its count at any moment is ``>= at_least`` (or ``<=
  at_most``) exactly when the count of those ``k`` is, so membership, its start and its
  next change come out the same (see :func:`keep_of`). Only ``within`` conditions keep
  every counting time: an event leaving the window can end membership.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import msgspec

from millpond.storage.contracts import EventLog
from millpond.storage.models import StoredEvent

from .definition import Condition, EventCondition, InSegment, TraitCondition, walk
from .evaluate import DAWN, PersonFacts, trait_roots, traits_of
from .outputs import COMPUTED_SOURCE_ID

#: Events that join identities: every id they name is a person to evaluate.
JOINING = frozenset({"identify", "alias", "group"})
#: "keep every time" (a ``within`` condition).
ALL = -1
_NONE: list[int] = []


class Head(msgspec.Struct):
    """The few fields of an event the scan looks at (msgspec skips the rest unparsed)."""

    type: Any = None
    event: Any = None
    userId: Any = None  # noqa: N815 - the event's own field names
    anonymousId: Any = None  # noqa: N815
    previousId: Any = None  # noqa: N815
    source_id: Any = None


_head = msgspec.json.Decoder(Head).decode
_full = msgspec.json.Decoder().decode


def keep_of(cond: EventCondition) -> int:
    """How many of the earliest counting times of ``cond`` decide it (:data:`ALL`: every
    one, for a ``within`` window)."""
    if cond.within_ms is not None:
        return ALL
    return max(cond.at_least, cond.at_most + 1 if cond.at_most is not None else 0)


def slot_key(cond: EventCondition) -> bytes:
    """What a slot of ``cond`` holds: the condition and how many of its times it keeps
    (a saved state is taken up only into slots that hold the same, :mod:`.saved_state`)."""
    return msgspec.json.encode((cond, keep_of(cond)))


class _Watch(msgspec.Struct):
    slot: int
    cond: EventCondition
    keep: int
    trigger: Any


def event_conditions(definitions: Mapping[str, Condition],
                     keys: Iterable[str]) -> list[EventCondition]:
    """The event conditions of the segments ``keys`` and of the segments they refer to
    with ``in_segment`` (the very objects the evaluator will be given)."""
    found: dict[int, EventCondition] = {}
    todo, seen = list(keys), set()
    while todo:
        key = todo.pop()
        if key in seen or key not in definitions:
            continue
        seen.add(key)
        for cond in walk(definitions[key]):
            if isinstance(cond, EventCondition):
                found.setdefault(id(cond), cond)
            elif isinstance(cond, InSegment):
                todo.append(cond.key)
    return list(found.values())


def trait_names(definitions: Mapping[str, Condition], key: str) -> set[str]:
    """The traits the segment ``key`` looks at, through ``in_segment`` too (for a path,
    ``address.city``, the object traits it may start in as well)."""
    found: set[str] = set()
    todo, seen = [key], set()
    while todo:
        current = todo.pop()
        if current in seen or current not in definitions:
            continue
        seen.add(current)
        for cond in walk(definitions[current]):
            if isinstance(cond, TraitCondition):
                found.update(trait_roots(cond.trait))
            elif isinstance(cond, InSegment):
                todo.append(cond.key)
    return found


#: Events read per call: large reads amortise the store's per-call cost.
READ_CHUNK = 20_000


class LogScan:
    """Feed it the log in ``seq`` order (:meth:`feed`); then :meth:`facts` gives each
    id's data. ``ids`` maps every id events name as a person to whether it was seen as a
    ``userId`` (as :func:`millpond.segments.engine.touch` does)."""

    def __init__(self, conditions: Sequence[EventCondition]) -> None:
        self.conditions = list(conditions)
        self._by_name: dict[str, list[_Watch]] = {}
        self._needs_body: set[str] = set()
        for slot, cond in enumerate(self.conditions):
            self._by_name.setdefault(cond.event, []).append(
                _Watch(slot, cond, keep_of(cond), cond.trigger()))
            if cond.where:
                self._needs_body.add(cond.event)
        self._keeps = [keep_of(cond) for cond in self.conditions]
        #: id(condition) -> its slot, shared by every person's facts (no dict per person).
        self._slot_of = {id(cond): slot for slot, cond in enumerate(self.conditions)}
        self.ids: dict[str, bool] = {}
        #: id -> [first event time, times of slot 0, times of slot 1, ...]: per slot
        #: None (no time), one time as a bare int (most slots: a list and its one int
        #: cost three times the memory), else a list of them.
        self._state: dict[str, list[Any]] = {}
        self.events = 0

    async def read_log(self, log: EventLog, upto: int,
                       progress: Callable[[int], None] | None = None) -> None:
        """:meth:`feed` the log up to ``upto``, in no particular order (the state is the
        same in any: a first time is a minimum, counting times are a set), a chunk
        per read (``EventLog.read_all``: archived files a row group at a time), yielding
        between reads (the scan is CPU work: requests should get through); ``progress``
        gets the number of events read after each read. The build and the follower's
        rebuild both scan so."""
        done = 0
        async for rows in log.read_all(upto, READ_CHUNK):
            self.feed(rows)
            done += len(rows)
            if progress is not None:
                progress(done)
            await asyncio.sleep(0)

    def feed(self, rows: Sequence[StoredEvent], heads: Sequence[Head] | None = None) -> None:
        """``heads``: the rows' :class:`Head` when the caller decoded them already (the
        follower reads each head once for this and for who a tick touches)."""
        by_name, needs_body, ids, state = self._by_name, self._needs_body, self.ids, \
            self._state
        width = len(self.conditions) + 1
        for n, row in enumerate(rows):
            head = _head(row.body) if heads is None else heads[n]
            if head.source_id == COMPUTED_SOURCE_ID:
                continue
            self.events += 1
            user, anon = head.userId, head.anonymousId
            owner = user if isinstance(user, str) and user else \
                anon if isinstance(anon, str) and anon else None
            if head.type in JOINING:
                for value, is_user in ((user, True), (anon, False),
                                       (head.previousId, False)):
                    if isinstance(value, str) and value:
                        ids[value] = ids.get(value, False) or is_user
            elif owner is not None:
                is_user = owner is user
                if not ids.get(owner, False):
                    ids[owner] = is_user
            if owner is None:
                continue
            slots: list[Any] | None = state.get(owner)
            ts = row.ts_ms
            if slots is None:
                slots = state[owner] = [ts] + [None] * (width - 1)
            elif ts < slots[0]:
                slots[0] = ts
            if head.type != "track":
                continue
            watches = by_name.get(head.event) if isinstance(head.event, str) else None
            if not watches:
                continue
            body = _full(row.body) if head.event in needs_body else None
            for w in watches:
                if w.trigger is not None and not w.trigger.matches(body):
                    continue
                if w.cond.between_ms is not None and not (
                        w.cond.between_ms[0] <= ts < w.cond.between_ms[1]):
                    continue
                if w.keep == 0:
                    continue
                times: int | list[int] | None = slots[w.slot + 1]
                if times is None:
                    slots[w.slot + 1] = ts
                elif isinstance(times, int):
                    if w.keep == 1:
                        if ts < times:
                            slots[w.slot + 1] = ts
                    else:
                        slots[w.slot + 1] = [times, ts] if times <= ts else [ts, times]
                elif w.keep == ALL:
                    times.append(ts)
                elif len(times) < w.keep:
                    bisect.insort(times, ts)
                elif ts < times[-1]:
                    bisect.insort(times, ts)
                    times.pop()

    def slot_keys(self) -> list[bytes]:
        """What each slot holds (:func:`slot_key`), in slot order."""
        return [slot_key(cond) for cond in self.conditions]

    def dump(self) -> tuple[dict[str, list[Any]], int]:
        """The per-id data and the count of events fed, as :meth:`restore` takes them."""
        return self._state, self.events

    def restore(self, state: dict[str, list[Any]], events: int) -> None:
        """Take up what :meth:`dump` gave, of a scan with the same :meth:`slot_keys`."""
        self._state, self.events = state, events

    def forget(self, ids: Iterable[str]) -> None:
        """Drop what the events of ``ids`` added (feed them again what is left of them):
        retention removed some. Each event's data is kept under its owner only (its
        ``userId``, else its ``anonymousId``), so no other id's changes."""
        for any_id in ids:
            self._state.pop(any_id, None)

    def gather(self, ids: Sequence[str]) -> tuple[int | None, list[list[int]]]:
        """The raw data of the person made of ``ids``: their earliest event time and, per
        slot, the counting times (sorted; only the ``k`` earliest where that decides).
        Empty slots share one empty list: read it, never change it."""
        first: int | None = None
        merged: list[list[int]] = [_NONE] * len(self.conditions)
        state, keeps = self._state, self._keeps
        several = False
        for any_id in ids:
            slots = state.get(any_id)
            if slots is None:
                continue
            first = slots[0] if first is None else min(first, slots[0])
            for i in range(len(merged)):
                times = slots[i + 1]
                if isinstance(times, int):
                    times = [times]
                if times:
                    before = merged[i]
                    if before:
                        several = True
                        merged[i] = [*before, *times]
                    else:
                        merged[i] = times
        for i, times in enumerate(merged):
            if times and (several or keeps[i] == ALL):
                times = sorted(times)
                merged[i] = times if keeps[i] == ALL else times[:keeps[i]]
        return first, merged

    def facts(self, ids: Sequence[str], profile: Mapping[str, Any] | None) -> ScannedFacts:
        """The data of the person made of ``ids`` (with its profile, or None)."""
        return self.facts_of(*self.gather(ids), profile)

    def facts_of(self, first: int | None, merged: list[list[int]],
                 profile: Mapping[str, Any] | None) -> ScannedFacts:
        """:meth:`facts` from what :meth:`gather` returned."""
        return ScannedFacts(profile, first, merged, self._slot_of)

    def covers(self, conditions: Iterable[EventCondition]) -> bool:
        """Whether every one of ``conditions`` (the very objects) has a slot here."""
        return all(id(cond) in self._slot_of for cond in conditions)

    def joined(self, other: LogScan) -> LogScan:
        """One scan with the slots of both, this one's first, for the same stretch of
        the log (an id only one holds, its other events expired meanwhile, gets no times
        for the other's conditions). Each id's lists are shared, not copied: let the two
        go."""
        both = LogScan([*self.conditions, *other.conditions])
        mine, theirs, state = self._state, other._state, both._state
        pad_mine = [None] * len(self.conditions)
        pad_theirs = [None] * len(other.conditions)
        for any_id, slots in mine.items():
            more = theirs.get(any_id)
            state[any_id] = [*slots, *pad_theirs] if more is None else \
                [min(slots[0], more[0]), *slots[1:], *more[1:]]
        for any_id, more in theirs.items():
            if any_id not in mine:
                state[any_id] = [more[0], *pad_mine, *more[1:]]
        both.events = self.events
        return both


class ScannedFacts(PersonFacts):
    """:class:`PersonFacts` from a scan: the counting times per event condition, no
    event bodies. Enough for :meth:`Evaluator.membership`; ``why`` reads the person's
    events through :mod:`.people` instead."""

    __slots__ = ("_first", "_first_seen", "_known", "_merged", "_slot_of")

    def __init__(self, profile: Mapping[str, Any] | None, first: int | None,
                 merged: list[list[int]], slot_of: Mapping[int, int]) -> None:
        # Not PersonFacts.__init__: there are no events to filter and sort.
        self.traits = traits_of(profile)
        self.events = []
        self._first = first
        self._first_seen: int | None = None
        self._known = False
        self._merged = merged
        self._slot_of = slot_of

    def first_seen(self) -> int | None:
        if self._known:
            return self._first_seen
        times = [t for _, t in self.traits.values() if t != DAWN]
        if self._first is not None:
            times.append(self._first)
        self._first_seen, self._known = (min(times) if times else None), True
        return self._first_seen

    def matching(self, cond: EventCondition) -> tuple[list[int], list[int]]:
        slot = self._slot_of.get(id(cond))
        return (self._merged[slot], _NONE) if slot is not None else ([], [])
