"""The follower's running state: what every id's events add up to, kept as events arrive.

Why: the follower used to re-read each touched person's whole history from the
per-person index (a query and a decode of every event, ~1.7 ms a person), so under
5,000 events/s of live ingest it fell tens of seconds behind. Here the compact per-id
data a build's scan gathers (:class:`~.scan.LogScan`: the first event time and, per
event condition, the counting times it needs, with their event times) is kept for every
id and fed each event once as the follower reads it; re-evaluating a touched person
then costs O(their conditions), not O(their history). The evaluation itself is
unchanged (:func:`~.plan.memberships` over the same data), so out-of-order and
past-dated events and ``within`` windows come out exactly as before: the state holds
event *times*, and membership is still computed from them in event time.

Why not persisted in the SegmentStore as it changes: the state is a pure function of
the log and the definitions, and it must be remade whenever a definition changes (its
conditions are its slots; :meth:`LiveState.matches`). Events that leave the log are
taken out of it person by person (:meth:`~.engine.SegmentEngine.events_removed`). A
copy kept in the store would need a schema in every backend, a write per event, and the
same rebuild on each of those changes anyway. So it is made by one sequential scan of
the log, at about a raw scan's speed, or, on the embedded store, taken up from the copy
saved at the last clean stop when that is exactly it (:mod:`.saved_state`). Memory
follows the people (and, for ``within`` conditions, their counting events), not the
length of the log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence

import msgspec

from millpond.storage.contracts import SegmentStore, Storage
from millpond.storage.models import Member, Segment, StoredEvent

from .definition import Condition, InSegment, walk
from .saved_state import SavedState, restored
from .scan import Head, LogScan, event_conditions

_canonical = msgspec.json.Encoder(order="sorted").encode

#: What a state was made for: the segments it evaluates and every definition (an
#: ``in_segment`` reads the others').
Key = tuple[tuple[str, ...], tuple[tuple[str, bytes], ...]]


def key_of(segments: Sequence[Segment], every: Sequence[Segment],
           definitions: Mapping[str, Condition]) -> Key:
    """The key of a state for ``segments`` among ``every`` segment: their ids and the
    definitions they read (theirs and, through ``in_segment``, the ones they refer to;
    a segment being built elsewhere changes nothing here)."""
    read: set[str] = set()
    todo = [s.key for s in segments]
    while todo:
        key = todo.pop()
        if key in read or key not in definitions:
            continue
        read.add(key)
        todo += [c.key for c in walk(definitions[key]) if isinstance(c, InSegment)]
    return (tuple(sorted(s.id for s in segments)),
            tuple(sorted((s.key, _canonical(s.definition)) for s in every if s.key in read)))


class LiveState:
    """The scan of the log up to ``upto`` for ``segments`` under ``definitions`` (the
    parsed conditions the scan's slots are: plans must be compiled from these very
    objects)."""

    def __init__(self, key: Key, definitions: Mapping[str, Condition], scan: LogScan,
                 upto: int) -> None:
        self.key = key
        self.definitions = definitions
        self.scan = scan
        self.upto = upto
        self.rows = RowCache()

    @classmethod
    async def rebuild(cls, storage: Storage, key: Key, segments: Sequence[Segment],
                      definitions: Mapping[str, Condition], upto: int) -> LiveState:
        """One sequential read of the log up to ``upto`` (yielding between reads: it is
        CPU work and requests should get through)."""
        scan = LogScan(event_conditions(definitions, [s.key for s in segments]))
        await scan.read_log(storage.log, upto)
        scan.ids.clear()  # the build's list of people; the follower names its own
        state = cls(key, definitions, scan, upto)
        await asyncio.to_thread(state.rows.fill, storage.segments, [s.id for s in segments])
        return state

    @classmethod
    async def taken_up(cls, storage: Storage, key: Key, segments: Sequence[Segment],
                       definitions: Mapping[str, Condition], saved: SavedState,
                       after: int) -> LiveState | None:
        """The state saved at the last stop (:mod:`.saved_state`), if it is the one for
        ``key`` at the follower's position ``after``; None otherwise."""
        scan = restored(saved, key, event_conditions(definitions, [s.key for s in segments]),
                        after)
        if scan is None:
            return None
        state = cls(key, definitions, scan, after)
        await asyncio.to_thread(state.rows.fill, storage.segments, [s.id for s in segments])
        return state

    def matches(self, key: Key, after: int) -> bool:
        """Whether this state is the one for ``key`` and has taken in the log up to
        ``after`` exactly (the follower's next rows follow on)."""
        return self.key == key and self.upto == after

    def feed(self, rows: Sequence[StoredEvent], upto: int,
             heads: Sequence[Head] | None = None) -> None:
        """Take in the follower's next rows (those after :attr:`upto`), up to ``upto``;
        ``heads``: their decoded heads, if the caller has them."""
        # Rows come in seq order: the fresh ones are a tail.
        start = next((n for n, row in enumerate(rows) if row.seq > self.upto), len(rows))
        if start < len(rows):
            self.scan.feed(rows[start:], None if heads is None else heads[start:])
            self.scan.ids.clear()
        self.upto = upto


#: Ids whose stored rows the cache holds before it starts over (bounds its memory).
ROW_CACHE_IDS = 200_000


class RowCache:
    """The stored membership rows of the ids the follower has looked up, kept in step
    with what it writes.

    Why: looking a tick's people up in the store (the rows that are theirs or share an
    id with them) cost more than evaluating them. While a :class:`LiveState` lives, the
    engine (under its lock) is the only writer of the followed segments' rows: a build
    writes only the segments it builds (not followed until it ends, when the state is
    remade, or made of the build's scan with the build's cache joined to it: ``adopt``,
    :meth:`joined`), and a
    regulation's deletion remakes it too. So an id read once from the
    store stays exact here by applying each write; an id never read is read from the
    store (:meth:`missing`).

    Why filled whole when the state is made (:meth:`fill`): right after a start or a
    definition change the cache is cold, and nearly every person a tick touches was a
    miss, looked up by id in the store (``by_ids``: ~3 us of CPU per row, a person's
    rows in every segment, the largest part of a live event's cost at a hundred
    thousand people). One sequential read of the followed segments' rows costs a
    fraction of that per row, and the cache then holds every row those segments have,
    so an id it does not hold has none there and is never looked up. Its memory is what
    the cache reaches anyway once the follower has seen everyone (:data:`ROW_CACHE_IDS`
    bounds both: past it, the fill stops and the cache works by misses as before).

    Why rows in a tuple per person, and ids mapped to people rather than to rows: the
    cache holds a row per member per segment (half a million at a hundred thousand
    people in ten segments, 1,000,000 events), and a dict entry and key tuple per row in
    two indexes had cost more than the rows (167 MiB then, 102 now, the ``Member`` rows
    included). A person's rows nearly always name the same ids, so an id names a person
    (a text, shared) and the rows hang off the person. Asking for an id's rows gives
    every row of the people naming it, a superset the engine sorts by owner anyway
    (``_stored_rows``)."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = ROW_CACHE_IDS if limit is None else limit
        #: person id -> their stored rows, one per segment (a tuple: a dict per person
        #: cost a third of the cache).
        self._rows: dict[str, tuple[Member, ...]] = {}
        #: identity -> the people with a row naming it: one person id (nearly always),
        #: else a tuple of them (empty: read, no row). An identity present was read.
        self._by_id: dict[str, str | tuple[str, ...]] = {}
        #: Every stored row of the followed segments is here (:meth:`fill`): an id
        #: absent has none, and rows written for new ids are indexed by their ids.
        self.complete = False

    def fill(self, store: SegmentStore, segment_ids: Sequence[str]) -> None:
        """Load every stored row of ``segment_ids`` (the followed segments; only their
        rows are ever asked for) unless their ids pass :attr:`limit`. On a worker
        thread: it reads the store."""
        self.fill_from(store.rows(segment_id) for segment_id in segment_ids)

    def fill_from(self, stored: Iterable[Iterable[Member]]) -> None:
        """:meth:`fill` from the rows of each segment as read (a build's: ``stored``)."""
        # A person's rows in every segment repeat the same texts (person id, user id,
        # ids) and a build's rows one processing time: kept once, they are half the
        # memory of a row as read.
        people: dict[str, Member] = {}
        times: dict[int, int] = {}
        segments: dict[str, str] = {}
        self.complete = True  # while filling: index every id of every row
        for rows in stored:
            for read in rows:
                first = people.get(read.person_id)
                if first is None:
                    people[read.person_id] = first = read
                row = Member(segments.setdefault(read.segment_id, read.segment_id),
                             first.person_id, read.member, read.since_ms,
                             read.next_change_ms, first.user_id, first.anonymous_id,
                             first.ids, times.setdefault(read.processed_ms, read.processed_ms)
                             ) if first.ids == read.ids and first.user_id == read.user_id \
                    and first.anonymous_id == read.anonymous_id else read
                self._put(row)
            if len(self._by_id) > self.limit:
                self._clear()
                return

    def joined(self, other: RowCache | None) -> RowCache:
        """This cache and ``other`` as one, of different segments (a build's rows and
        the follower's). This one is changed and returned; let ``other`` go. Unless both
        are complete, and within :attr:`limit`, an empty cache that works by misses (an
        id one of them read may have rows the other never read).

        Why: a build's rows were written moments ago, and its cache kept them as they
        were written (:meth:`written`); reading every followed segment's rows again
        (:meth:`fill`) cost about 2 s at half a million rows, while the follower, holding
        its lock, could update no segment."""
        if not self.complete or other is not None and not other.complete:
            self._clear()
        elif other is not None:
            rows = self._rows
            for person_id, theirs in other._rows.items():
                mine = rows.get(person_id)
                rows[person_id] = theirs if mine is None else (*theirs, *mine)
            for identity, found in other._by_id.items():
                for person_id in (found,) if isinstance(found, str) else found:
                    self._link(identity, person_id)
        if len(self._by_id) > self.limit:
            self._clear()
        return self

    def _clear(self) -> None:
        self._by_id.clear()
        self._rows.clear()
        self.complete = False

    def missing(self, ids: Sequence[str]) -> list[str]:
        if len(self._by_id) > self.limit:
            self._clear()
        if self.complete:
            return []
        return [i for i in ids if i not in self._by_id]

    def load(self, ids: Sequence[str], rows: Sequence[Member]) -> None:
        """``rows``: what the store holds for ``ids`` (``SegmentStore.by_ids``)."""
        for i in ids:
            self._by_id.setdefault(i, ())
        for row in rows:
            self._put(row)

    def rows_of(self, ids: Sequence[str]) -> list[Member]:
        people: set[str] = set()
        for i in ids:
            found = self._by_id.get(i)
            if isinstance(found, str):
                people.add(found)
            elif found:
                people.update(found)
        rows = self._rows
        return [row for pid in people for row in rows.get(pid, ())]

    def forget(self, ids: Sequence[str]) -> None:
        """The store no longer has the rows of the people ``ids`` name (a deletion's
        ``PersonEraser.segment_memberships``, not written through the engine)."""
        self.written([], [(row.segment_id, row.person_id) for row in self.rows_of(ids)])

    def written(self, rows: Sequence[Member], drop: Sequence[tuple[str, str]]) -> None:
        """What ``SegmentStore.apply(rows, drop=drop)`` wrote."""
        cached = self._rows
        #: person id -> the ids their rows named before this write (people whose rows
        #: changed ids, or lost or gained a row: their index entries are redone).
        redo: dict[str, set[str]] = {}
        for segment_id, person_id in drop:
            mine = cached.get(person_id, ())
            if any(r.segment_id == segment_id for r in mine):
                redo.setdefault(person_id, _ids_of(mine))
                cached[person_id] = tuple(r for r in mine if r.segment_id != segment_id)
        # Per person: a build writes each person's rows of every segment together, and
        # their tuple is made once, not once per row.
        by_person: dict[str, dict[str, Member]] = {}
        for row in rows:
            by_person.setdefault(row.person_id, {})[row.segment_id] = row
        for person_id, new in by_person.items():
            mine = cached.get(person_id, ())
            old = {r.segment_id: r for r in mine}
            if person_id not in redo and any(
                    (before := old.get(sid)) is None or tuple(before.ids) != tuple(row.ids)
                    for sid, row in new.items()):
                redo[person_id] = _ids_of(mine)
            # Else (nearly every live write) the same ids, so the same index entries.
            cached[person_id] = tuple({**old, **new}.values())
        for person_id, named in redo.items():
            mine = cached.get(person_id, ())
            now = _ids_of(mine)
            for i in named - now:
                self._unlink(i, person_id)
            for i in now - named:
                self._link(i, person_id)
            if not mine:
                cached.pop(person_id, None)
        if self.complete and len(self._by_id) > self.limit:
            self._clear()  # new people took it past its bound: it works by misses

    def _put(self, row: Member) -> None:
        """Hold ``row`` as read from the store (the same row again: no change)."""
        self._rows[row.person_id] = _with(self._rows.get(row.person_id, ()), row)
        for i in row.ids:
            self._link(i, row.person_id)

    def _link(self, identity: str, person_id: str) -> None:
        """Index ``person_id`` under ``identity`` if the identity was read (an id never
        read is looked up in the store when asked for, rows and all), or the cache
        holds every row."""
        found = self._by_id.get(identity)
        if found is None:
            if self.complete:
                self._by_id[identity] = person_id
        elif not found:
            self._by_id[identity] = person_id
        elif isinstance(found, str):
            if found != person_id:
                self._by_id[identity] = (found, person_id)
        elif person_id not in found:
            self._by_id[identity] = (*found, person_id)

    def _unlink(self, identity: str, person_id: str) -> None:
        found = self._by_id.get(identity)
        if found == person_id:
            self._by_id[identity] = ()  # still read: it has no row now
        elif isinstance(found, tuple) and person_id in found:
            left = tuple(p for p in found if p != person_id)
            self._by_id[identity] = left[0] if len(left) == 1 else left


def _with(rows: tuple[Member, ...], row: Member) -> tuple[Member, ...]:
    """``rows`` with ``row`` in place of the one of its segment, else added."""
    if any(r.segment_id == row.segment_id for r in rows):
        return tuple(row if r.segment_id == row.segment_id else r for r in rows)
    return (*rows, row)


def _ids_of(rows: Sequence[Member]) -> set[str]:
    return {i for row in rows for i in row.ids}
