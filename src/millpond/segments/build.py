"""Building segments over the whole log: one scan for all of them, then every person once.

Why this shape: a build used to re-evaluate each person through the per-person index,
segment by segment, at a few thousand events a second. Here one sequential read of the
log up to where it stood when the build began (:class:`~.scan.LogScan`) feeds every
segment being built; then each person is evaluated for all of them from the compact
data the scan kept, and their Audience events and rows are written per batch of
thousands of people in one transaction each.

Staying exact while the log moves on: while a build runs, the follower and the
scheduler leave the segments being built alone (:attr:`SegmentEngine.building`). At
the end, under the engine's lock, the people touched by the events the follower took
in after the build's end of scan are re-evaluated for the built segments from their
full data, and the segments are handed to the follower: every event is then counted,
either by the scan or by a later re-evaluation, and the final state of every person is
computed after the last event that touches them, as the incremental path does. Events
retention removed meanwhile may have been counted by the scan before they went: their
owners' data is read again, and they are re-evaluated too.

The scan is then not thrown away: fed those same events too, it is the log up to the
follower's position for the built segments, and it joins the follower's running state
(:meth:`SegmentEngine.adopt`), which would otherwise be remade with a second scan of
the whole log while holding the engine's lock. So it is kept whole while the batches
are evaluated (they used to drop each person's data once evaluated): the running state
holds the same data right after anyway.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

from millpond.errors import NotFound
from millpond.storage.contracts import SegmentStore
from millpond.storage.models import Member, NewEvent, Segment, add_owners
from millpond.timeutil import format_ms

from .evaluate import Evaluator
from .live import Key, RowCache, key_of
from .people import Person, resolve_many
from .plan import SegmentPlan, compile_plans, memberships
from .removed import owned_events
from .scan import READ_CHUNK, LogScan, event_conditions

if TYPE_CHECKING:
    from .engine import Change, SegmentEngine

#: People evaluated (and written, in one transaction) per batch.
BATCH = 5_000
#: Audience events per append (a batch of people makes up to one per person and
#: segment: 27,000 for 10 segments). Why not all at once: the log commits a submission
#: whole and in order, so a collector's event sent meanwhile waited for all of them. Ten
#: segments built on a server of a million events taking 100 ``/v1/track`` a second:
#: p99 196 ms and max 329 ms during the builds, now 100-102 ms and 217-226 ms.
APPEND_CHUNK = 5_000
#: How often (events scanned) the progress on the segment records is updated.
REPORT_EVERY = 100_000

_decode = msgspec.json.Decoder().decode
log = logging.getLogger("millpond.segments")


async def build_segments(engine: SegmentEngine, segment_ids: Sequence[str]) -> list[Segment]:
    """Build ``segment_ids`` over the log as it stands now; see the module docstring."""
    from .engine import touch  # the engine imports this module when it builds

    storage = engine.storage
    wanted = list(dict.fromkeys(segment_ids))
    for sid in wanted:
        storage.segments.get(sid)  # NotFound before anything changes
    engine.building.update(wanted)
    alive: _Progress | None = None
    removed: dict[str, bool] = {}  # retention's, meanwhile (SegmentEngine.events_removed)
    engine.removals.append(removed)
    erased: list[str] = []  # a deletion's, meanwhile (SegmentEngine.rows_erased)
    engine.erasures.append(erased)
    try:
        epoch = engine.epoch
        upto = storage.log.last_seq()
        if engine.profiles_upto is not None:
            await engine.profiles_upto(upto)
        started = engine.clock()
        alive = _Progress(engine, wanted)
        alive.set(state="building", build_upto_seq=upto, build_phase="scanning",
                  build_total=upto, build_done=0, build_started_ms=started)
        segments, definitions = engine.definitions()
        built = [s for s in segments if s.id in alive.ids]
        scan = LogScan(event_conditions(definitions, [s.key for s in built]))
        reported = 0

        def progress(after: int) -> None:
            nonlocal reported
            if after - reported >= REPORT_EVERY:
                alive.set(build_done=after)
                reported = after

        await scan.read_log(storage.log, upto, progress)

        previous, cache = await asyncio.to_thread(_stored, storage.segments, built)
        # Everyone the rows name is settled too: one whose events all left the log
        # (retention) is no longer what the rows say.
        for (_sid, identity), rows in previous.items():
            scan.ids.setdefault(identity, any(r.user_id == identity for r in rows))
        people = await people_of(engine, scan)
        alive.set(build_phase="evaluating", build_total=len(people), build_done=0,
                  build_started_ms=engine.clock())
        evaluator = Evaluator(definitions)
        plans = compile_plans(evaluator, definitions, built, scan)
        for start in range(0, len(people), BATCH):
            chunk = people[start:start + BATCH]
            plans = [p for p in plans if p.segment.id in alive.ids]
            # On a worker thread: CPU that would hold up the server's requests.
            outputs, rows, drop = await asyncio.to_thread(
                _evaluate, engine, evaluator, plans, chunk, scan, previous)
            for part in range(0, len(outputs), APPEND_CHUNK):
                await storage.log.append(outputs[part:part + APPEND_CHUNK])
            if rows or drop:
                await asyncio.to_thread(_write, storage.segments, cache, rows, drop)
            alive.set(build_done=min(len(people), start + BATCH))

        async with engine.lock:
            # What the follower took in meanwhile, it took in without these segments.
            position = engine.position()
            touched: dict[str, bool] = {}
            cursor = upto
            while cursor < position:
                rows = await storage.log.read(cursor, READ_CHUNK, upto_seq=position)
                if not rows:
                    break
                for row in rows:
                    touch(touched, _decode(row.body))
                scan.feed(rows)  # for the follower's state (adopt)
                cursor = rows[-1].seq
            cache.forget(erased)  # read before a deletion removed them
            if removed:  # the scan may have counted them before they went
                scan.forget(removed)
                scan.feed(await owned_events(storage, removed, position))
                add_owners(touched, removed)
            engine.building.difference_update(alive.done(wanted))
            if touched and alive.ids:
                await engine.reevaluate(touched, segment_ids=set(alive.ids), rows=cache)
            if position >= upto:
                try:
                    await engine.adopt(scan, definitions, built, segments, position, epoch,
                                       cache)
                except Exception:  # noqa: BLE001 - the segments are built either way
                    log.exception("could not hand a build's scan to the segment follower;"
                                  " it reads the log again instead")
            return alive.set(state="ready", build_phase="")
    finally:
        engine.removals.remove(removed)
        engine.erasures.remove(erased)
        if not engine.removals:
            engine.builds_ended()
        engine.building.difference_update(wanted if alive is None else alive.done(wanted))


class _Progress:
    """Progress on the segment records. A segment deleted meanwhile drops out, and so does
    one whose definition, or that of a segment it reads with ``in_segment``, changed
    (:attr:`superseded`): the build the change started takes it over once this one has
    stopped, so this one writes nothing more for it (not even its progress) and leaves
    it marked as being built."""

    def __init__(self, engine: SegmentEngine, ids: list[str]) -> None:
        self.engine = engine
        self.superseded: set[str] = set()
        #: What each was built for: definitions read that differ from these are a change.
        self._reads = {sid: key for sid in ids if (key := self._read(sid)) is not None}
        self.ids = list(self._reads)

    def _read(self, segment_id: str) -> Key | None:
        every, definitions = self.engine.definitions()
        mine = [s for s in every if s.id == segment_id]
        return key_of(mine, every, definitions) if mine else None

    def set(self, **fields: object) -> list[Segment]:
        out = []
        for sid in list(self.ids):
            try:
                segment = self.engine.storage.segments.get(sid)
            except NotFound:
                self.ids.remove(sid)
                continue
            if self._read(sid) != self._reads[sid]:
                self.ids.remove(sid)
                self.superseded.add(sid)
                continue
            out.append(self.engine.storage.segments.update(
                msgspec.structs.replace(segment, **fields)))
        return out

    def done(self, wanted: list[str]) -> set[str]:
        """The segments of ``wanted`` this build no longer holds back from the follower."""
        return set(wanted) - self.superseded


async def people_of(engine: SegmentEngine, scan: LogScan) -> list[Person]:
    """Every person the scanned ids belong to, once (merged profiles join ids), in
    person id order."""
    people: dict[str, Person] = {}
    ids = list(scan.ids.items())
    for start in range(0, len(ids), 2000):
        # A read of the profile store per 2,000 ids, on a worker thread.
        found = await asyncio.to_thread(resolve_many, engine.storage,
                                        dict(ids[start:start + 2000]))
        for person in found.values():
            people.setdefault(person.id, person)
    # In person id order: each batch's rows then land next to the previous batch's in
    # the store's indexes (keyed by segment and person), not all over them.
    return sorted(people.values(), key=lambda p: p.id)


def _stored(store: SegmentStore, built: list[Segment],
            ) -> tuple[dict[tuple[str, str], list[Member]], RowCache]:
    """The rows the built segments already have (a rebuild), by (segment id, identity),
    and a row cache holding them, which the build then keeps in step with what it writes
    (the follower's at the end: ``adopt``). On a worker thread: a rebuild reads every
    row of its segments."""
    stored = {segment.id: store.rows(segment.id) for segment in built}
    found: dict[tuple[str, str], list[Member]] = {}
    for segment_id, rows in stored.items():
        for row in rows:
            for identity in row.ids:
                found.setdefault((segment_id, identity), []).append(row)
    cache = RowCache()
    cache.fill_from(stored.values())
    return found, cache


def _write(store: SegmentStore, cache: RowCache, rows: list[Member],
           drop: list[tuple[str, str]]) -> None:
    """Store a batch's rows, and keep them in the build's cache unless it has given up
    (past its limit: its rows would only be dropped at the end). On a worker thread."""
    store.apply(rows, drop=drop)
    if cache.complete:
        cache.written(rows, drop)


def _evaluate(engine: SegmentEngine, evaluator: Evaluator, plans: list[SegmentPlan],
              people: list[Person], scan: LogScan,
              previous: dict[tuple[str, str], list[Member]],
              ) -> tuple[list[NewEvent], list[Member], list[tuple[str, str]]]:
    """The Audience events, rows and rows to drop of one batch of people."""
    now = engine.clock()
    received_at = format_ms(now)
    changes: list[Change] = []
    rows: list[Member] = []
    drop: list[tuple[str, str]] = []
    for person in people:
        states = memberships(evaluator, plans, scan, person.ids, person.profile, now)
        for plan, m in zip(plans, states, strict=True):
            segment = plan.segment
            before = None
            merged: set[bool] = set()
            if previous:
                mine: dict[str, Member] = {}
                for identity in person.ids:
                    for row in previous.get((segment.id, identity), ()):
                        mine[row.person_id] = row
                before = engine.previous_row(list(mine.values()), person.id)
                drop += [(segment.id, pid) for pid in mine if pid != person.id]
                merged = {r.member for pid, r in mine.items() if pid != person.id}
            engine.settle(segment, person, m, before, merged, now, changes, rows,
                          no_history=before is None)
    return engine.announce(changes, now, received_at), rows, drop
