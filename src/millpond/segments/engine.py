"""The membership engine: builds a new segment over the whole log, then keeps every
segment exact as events arrive and as time passes.

Three ways a person gets re-evaluated, all through :meth:`SegmentEngine.reevaluate`:

- **the follower** reads the log after its checkpoint and re-evaluates only the people
  the new events touch (an event's ``userId``, ``anonymousId``, an alias's
  ``previousId``: after an identify or alias merge, the merged person);
- **the scheduler** re-evaluates the people whose ``next_change_ms`` has come (the
  moment their oldest counting event leaves a ``within`` window), found through the
  store's index, never by scanning everyone;
- **a build** re-evaluates every person in the log up to the position it started at
  (progress and ETA on the segment), then marks the segment ``ready``; the follower
  covers what arrives meanwhile;
- and when **retention** removes events (:meth:`SegmentEngine.events_removed`), their
  owners are re-evaluated without them.

Re-evaluation computes membership from scratch in event time (:mod:`.evaluate`) from
the person's whole data, so the result never depends on the order events arrived in or
on which of the three paths ran first. That data comes from the follower's running
state (:mod:`.live`: per id, what each event condition counts, fed every event once),
so a live event costs O(conditions), not a read of the person's history; only a
re-evaluation for segments the state is not kept for (the end of a build) reads the
per-person index. A change appends an Audience event
(:mod:`.outputs`) and *then* stores the new state: after a crash in between, the same
work appends the same messageIds again, which the log dedupes.

The clock is injectable (``clock() -> Unix ms``): tests move time instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import NamedTuple

import msgspec

from millpond import heap
from millpond.errors import NotFound
from millpond.storage.contracts import Storage, StorageUnavailable
from millpond.storage.models import Member, NewEvent, Segment, StoredEvent, add_owners
from millpond.timeutil import format_ms

from .definition import Condition, parse_definition
from .evaluate import Evaluator, Membership
from .live import LiveState, RowCache, key_of
from .outputs import COMPUTED_SOURCE_ID, audience_event, computed_source
from .people import Person, resolve_many, scan_people
from .plan import SegmentPlan, Touched, compile_plans, memberships
from .removed import owned_between, owned_events, parts_of
from .saved_state import SavedState, save, take
from .scan import Head, LogScan, event_conditions

log = logging.getLogger("millpond.segments")


#: Let commits pile up this long between the starts of reads (the profile follower
#: waits so after each read).
COALESCE_SECONDS = 0.1


#: Events that join identities: every id they name is touched.
JOINING = frozenset({"identify", "alias", "group"})


def touch(found: dict[str, bool], event: dict) -> None:
    """Add the people ``event`` touches: its person (``userId``, else ``anonymousId``,
    as the per-person index files it), and for identify / alias / group every id it
    names (they merge profiles). Computed events touch nobody."""
    if event.get("source_id") == COMPUTED_SOURCE_ID:
        return
    keys = ("userId", "anonymousId", "previousId") if event.get("type") in JOINING \
        else ("userId",) if event.get("userId") else ("anonymousId",)
    for key in keys:
        value = event.get(key)
        if isinstance(value, str) and value:
            found[value] = found.get(value, False) or key == "userId"


#: What the follower reads of each event (msgspec skips the rest unparsed).
_head = msgspec.json.Decoder(Head).decode


def touch_named(found: dict[str, bool], names: dict[str, Touched | None],
                row: StoredEvent, head: Head | None = None) -> None:
    """:func:`touch` from a stored event's JSON (or its ``head``, decoded already), also
    noting per id what touched it (:class:`~.plan.Touched`; None: an identify, alias or
    group touched it, which may change traits and merge people: every segment is
    concerned)."""
    if head is None:
        head = _head(row.body)
    if head.source_id == COMPUTED_SOURCE_ID:
        return
    joining = head.type in JOINING
    user, anon = head.userId, head.anonymousId
    if joining:
        named = ((user, True), (anon, False), (head.previousId, False))
    else:
        named = ((user, True),) if user else ((anon, False),)
    name = head.event if head.type == "track" and isinstance(head.event, str) else None
    for value, is_user in named:
        if not isinstance(value, str) or not value:
            continue
        found[value] = found.get(value, False) or is_user
        if joining:
            names[value] = None
        elif value not in names:
            names[value] = Touched({name} if name else set(), row.ts_ms)
        else:
            mine = names[value]
            if mine is not None:
                mine.add(name, row.ts_ms)


#: What the rows of profiles merged into a person said, for the (usual) person with none.
_NO_MERGED: frozenset[bool] = frozenset()


class Change(NamedTuple):
    """A person's membership that changed in a segment: an Audience event to make
    (:meth:`SegmentEngine.announce`). ``no_history``: none stored for them there."""

    segment: Segment
    person: Person
    member: bool
    at_ms: int
    no_history: bool


class _Work:
    """What :meth:`SegmentEngine._plan_work` found to evaluate: per person, the plans
    the tick's events may change and what their stored rows said; the rows to drop."""

    __slots__ = ("evaluator", "scan", "people", "drop")

    def __init__(self, evaluator: Evaluator, scan: LogScan) -> None:
        self.evaluator = evaluator
        self.scan = scan
        self.people: list[tuple[Person, list[SegmentPlan],
                                list[tuple[Member | None, AbstractSet[bool]]]]] = []
        self.drop: list[tuple[str, str]] = []


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


class SegmentEngine:
    """See the module docstring. ``profiles_upto(seq)`` must return once the profile
    store has applied the log up to ``seq`` (identities must be merged before people
    are evaluated); by default the profile store's own checkpoint is trusted."""

    def __init__(self, storage: Storage, *, clock: Callable[[], int] = wall_clock_ms,
                 profiles_upto: Callable[[int], Awaitable[None]] | None = None,
                 chunk: int = 5000, saved_state: Path | None = None) -> None:
        self.storage = storage
        #: Where the running state is saved at a clean stop and taken up from at the
        #: next start (:mod:`.saved_state`; None: remade from the log every start).
        self.saved_state = saved_state
        self._saved: SavedState | None = None
        #: False once anything changed the log's past since the start (a removal): a
        #: saved state is then not taken up.
        self._may_take_up = True
        self.clock = clock
        self.chunk = chunk
        self.profiles_upto = profiles_upto
        #: Held by whatever re-evaluates people: one writer of memberships at a time.
        self.lock = asyncio.Lock()
        #: Segments a build is computing: the follower and the scheduler leave them to it.
        self.building: set[str] = set()
        self._position: int | None = None
        #: The follower's per-id state (:mod:`.live`); None until its first read.
        self._live: LiveState | None = None
        #: Counts :meth:`invalidate` calls: a build's scan taken before one is stale.
        self.epoch = 0
        #: One per running build: the owners of the events retention removed since it
        #: began (:meth:`events_removed`), which its scan may still count.
        self.removals: list[dict[str, bool]] = []
        #: Ids of the people a deletion is removing (:meth:`withhold`), counted per
        #: deletion; and those released while builds ran (:meth:`release`).
        self.withheld: Counter[str] = Counter()
        self._released: list[str] = []
        #: One per running build: the ids whose rows a deletion removed since it began
        #: (:meth:`rows_erased`), which its row cache may still hold.
        self.erasures: list[list[str]] = []

    # -- definitions --------------------------------------------------------------------

    def ensure_source(self) -> None:
        """Create the built-in ``computed`` source once."""
        try:
            self.storage.sources.get(COMPUTED_SOURCE_ID)
        except NotFound:
            self.storage.sources.create(computed_source())

    def definitions(self) -> tuple[list[Segment], dict[str, Condition]]:
        segments = self.storage.segments.list()
        return segments, {s.key: parse_definition(s.definition) for s in segments}

    # -- one person ---------------------------------------------------------------------

    async def reevaluate(self, any_ids: Mapping[str, bool], *,
                         segment_ids: set[str] | None = None,
                         checkpoint: int | None = None,
                         names: Mapping[str, Touched | None] | None = None,
                         rows: RowCache | None = None) -> int:
        """Re-evaluate the people ``any_ids`` (id -> seen as a user id) belong to in
        every segment (or only ``segment_ids``); append the Audience events of each
        change, then store the new states (with ``checkpoint``). Returns how many changes
        there were.

        ``names`` (the follower's, from :func:`touch_named`): per id, the names and the
        earliest time of the events that touched it, None for an identify, alias or
        group. A person is
        then evaluated only in the segments those events may change
        (:meth:`~.plan.SegmentPlan.unaffected`), and their events are read only if there
        is one; without ``names`` every segment is evaluated. ``rows``: a cache of the
        stored rows of ``segment_ids`` (a build's) to read through and keep in step, when
        the running state is not for them."""
        every, definitions = self.definitions()
        segments = [s for s in every if s.id in segment_ids] if segment_ids is not None \
            else self._followed(every)
        if not segments:
            if checkpoint is not None:
                await asyncio.to_thread(self.storage.segments.apply, [],
                                        checkpoint=checkpoint)
            return 0
        # The follower's running state, when it is the one for these segments: no reads.
        live = self._live
        if live is not None and live.key != key_of(segments, every, definitions):
            live = None
        if live is not None:
            definitions = live.definitions  # the very conditions its slots are
            rows = live.rows
        now = self.clock()
        # Off the event loop, in two steps (the per-person index read between them is
        # async): resolving people, reading their rows, evaluating them and making the
        # Audience events is CPU and SQLite work that would otherwise hold up every
        # request the server is answering meanwhile.
        work = await asyncio.to_thread(self._plan_work, dict(any_ids), names, segments,
                                       definitions, live, rows)
        if live is None:
            await scan_people(self.storage, work.scan,
                              [person for person, _, _ in work.people])
        outputs, written = await asyncio.to_thread(self._evaluate_work, work, now)
        if outputs:
            await self.storage.log.append(outputs)
        if written or work.drop or checkpoint is not None:
            await asyncio.to_thread(self.storage.segments.apply, written, drop=work.drop,
                                    checkpoint=checkpoint)
            if rows is not None:
                rows.written(written, work.drop)
        return len(outputs)

    def _plan_work(self, any_ids: dict[str, bool], names: Mapping[str, Touched | None] | None,
                   segments: list[Segment], definitions: Mapping[str, Condition],
                   live: LiveState | None, cache: RowCache | None) -> _Work:
        """Who to evaluate in which segments (see :meth:`reevaluate`): the people of
        ``any_ids`` (one read of the profile store), their stored rows, and per person
        the plans the tick's events may change. On a worker thread."""
        evaluator = Evaluator(definitions)
        people: dict[str, Person] = {}
        touched_by: dict[str, Touched | None] = {}
        for any_id, person in resolve_many(self.storage, any_ids).items():
            people.setdefault(person.id, person)
            if names is not None:
                mine = names.get(any_id)
                if person.id not in touched_by:
                    touched_by[person.id] = None if mine is None \
                        else Touched(set(mine.names), mine.earliest)
                elif (before := touched_by[person.id]) is not None:
                    if mine is None:
                        touched_by[person.id] = None
                    else:
                        before.merge(mine)
        stored = self._stored_rows(list(people.values()), cache)
        # Without the running state, one scanner for the whole call: it decodes each
        # event's head only, and in full only where a condition's ``where`` needs it (see
        # :mod:`.scan`), fed from the per-person index before the evaluation.
        scan = live.scan if live is not None else \
            LogScan(event_conditions(definitions, [s.key for s in segments]))
        plans = compile_plans(evaluator, definitions, segments, scan)
        work = _Work(evaluator, scan)
        nothing: dict[str, Member] = {}
        for person in people.values():
            mine_plans: list[SegmentPlan] = []
            befores: list[tuple[Member | None, AbstractSet[bool]]] = []
            theirs = stored.get(person.id, {})
            touched = touched_by.get(person.id)
            for plan in plans:
                sid = plan.segment.id
                mine = theirs.get(sid, nothing)
                # Nearly always no row or the person's own (no merge): no list to rank.
                own = not mine or (len(mine) == 1 and person.id in mine)
                previous = mine.get(person.id) if own else \
                    self.previous_row(list(mine.values()), person.id)
                if own:
                    if names is not None and plan.unaffected(touched, previous):
                        continue
                    mine_plans.append(plan)
                    befores.append((previous, _NO_MERGED))
                    continue
                # Rows of profiles merged into this one are never left as they are.
                work.drop += [(sid, pid) for pid in mine if pid != person.id]
                mine_plans.append(plan)
                # What the rows of profiles merged into this one said (see settle).
                befores.append((previous, {r.member for pid, r in mine.items()
                                           if pid != person.id}))
            if mine_plans:
                work.people.append((person, mine_plans, befores))
        return work

    def _evaluate_work(self, work: _Work, now: int) -> tuple[list[NewEvent], list[Member]]:
        """The Audience events and rows of :meth:`_plan_work`'s people. On a worker
        thread."""
        received_at = format_ms(now)
        rows: list[Member] = []
        changes: list[Change] = []
        for person, mine_plans, befores in work.people:
            states = memberships(work.evaluator, mine_plans, work.scan, person.ids,
                                 person.profile, now)
            for plan, (previous, merged), m in zip(mine_plans, befores, states, strict=True):
                self.settle(plan.segment, person, m, previous, merged, now, changes, rows)
        return self.announce(changes, now, received_at), rows

    def _stored_rows(self, people: list[Person], cache: RowCache | None = None,
                     ) -> dict[str, dict[str, dict[str, Member]]]:
        """The stored rows of every id of ``people``, in a few queries: person id ->
        segment id -> the rows (by their person id) that are theirs or share an id with
        them (the rows of profiles merged into them). ``cache``: the running state's, read
        through (only ids it has not seen are looked up)."""
        owner: dict[str, str] = {}
        for person in people:
            owner[person.id] = person.id
            for identity in person.ids:
                owner[identity] = person.id
        ids = sorted({i for person in people for i in person.ids})
        found: dict[str, dict[str, dict[str, Member]]] = {}
        if cache is not None:
            missing = cache.missing(ids)
            for start in range(0, len(missing), 500):
                part = missing[start:start + 500]
                cache.load(part, self.storage.segments.by_ids(part))
            stored = cache.rows_of(ids)
        else:
            stored = [row for start in range(0, len(ids), 500)
                      for row in self.storage.segments.by_ids(ids[start:start + 500])]
        for row in stored:
            for key in (row.person_id, *row.ids):
                pid = owner.get(key)
                if pid is not None:
                    found.setdefault(pid, {}).setdefault(row.segment_id, {})[
                        row.person_id] = row
        return found

    def settle(self, segment: Segment, person: Person, m: Membership,
               previous: Member | None, merged: AbstractSet[bool], now: int,
               changes: list[Change], rows: list[Member], *,
               no_history: bool = False) -> None:
        """The change (into ``changes``, made Audience events by :meth:`announce`) and
        row (into ``rows``) of one person's new state in one segment, for the build and
        the follower alike. ``previous``: the state stored for them; ``merged``: what the
        rows of profiles merged into them said. Their events went out under those ids, so
        a merged person whose state differs from any of them is announced again (else the
        last event a destination holds for the merged person could be a stale "Entered").
        ``no_history``: the caller knows the person has none here (a build's new people),
        so it is not counted. Nothing for people being deleted (:meth:`withhold`)."""
        if self.withheld and not self.withheld.keys().isdisjoint(person.ids):
            return
        was = previous.member if previous else False
        if m.member != was or any(said != m.member for said in merged):
            at = m.since_ms if m.since_ms is not None else now
            if previous is not None and previous.since_ms is not None:
                # A late event can show that the stored state never held: someone who
                # entered at their first page view leaves when an older Checkout Started
                # arrives. The change is announced no earlier than the state it ends, or
                # a destination would read an exit older than the entry it closes (and
                # one with a trigger window would skip the exit after sending the entry).
                at = max(at, previous.since_ms)
            changes.append(Change(segment, person, m.member, at, no_history))
        # No row reads as "not a member": a non-member with nothing scheduled and nothing
        # stored needs none; and a row that would say what the stored one says is not
        # written again (most live re-evaluations change nothing: a write per person per
        # segment was the follower's largest cost).
        if previous is not None and not merged and previous.person_id == person.id \
                and previous.member == m.member and previous.since_ms == m.since_ms \
                and previous.next_change_ms == m.next_change_ms \
                and previous.user_id == person.user_id \
                and previous.anonymous_id == person.anonymous_id \
                and tuple(previous.ids) == tuple(person.ids):
            return
        if m.member or m.next_change_ms is not None or previous is not None:
            rows.append(Member(segment.id, person.id, m.member, m.since_ms, m.next_change_ms,
                               person.user_id, person.anonymous_id, person.ids, now))

    def announce(self, changes: Sequence[Change], now: int,
                 received_at: str) -> list[NewEvent]:
        """The Audience events of ``changes``. Each messageId counts the person's earlier
        changes in the segment (their history: a person may enter at the same event time
        twice, after an exit, and the second entry must not be deduped as the first);
        those counts come from one read of the store for all of them
        (``history_counts``), where a read of each person's history cost a query per
        change."""
        counts = self.storage.segments.history_counts(
            [(c.segment.id, c.person.id) for c in changes if not c.no_history])
        return [audience_event(
            c.segment, person_id=c.person.id, user_id=c.person.user_id,
            anonymous_id=c.person.anonymous_id, member=c.member, at_ms=c.at_ms,
            generation=0 if c.no_history else counts[(c.segment.id, c.person.id)],
            received_ms=now, received_at=received_at) for c in changes]

    @staticmethod
    def previous_row(rows: list[Member], person_id: str) -> Member | None:
        """The state this person had: their own row, else (a merge) the row of a profile
        merged into them, a member first, latest processed first."""
        for row in rows:
            if row.person_id == person_id:
                return row
        ranked = sorted(rows, key=lambda r: (r.member, r.processed_ms), reverse=True)
        return ranked[0] if ranked else None

    # -- the follower -------------------------------------------------------------------

    async def catch_up_once(self) -> int:
        """Re-evaluate the people touched by the events after the checkpoint (a chunk at
        most); returns how many events were read."""
        if self.storage.log.last_seq() <= self.position():
            # Nothing new: no wait for the lock, which a reader asking for its own writes
            # (GET /api/people) would otherwise wait on while the state is made at start.
            return 0
        async with self.lock:
            after = self.storage.segments.checkpoint() if self._position is None \
                else self._position
            upto = self.storage.log.last_seq()
            if upto <= after:
                return 0
            if not self._followed(self.storage.segments.list()):
                # Nothing to keep: move past the events unread (a collector on the same
                # loop pays for every read). A segment made later is built over the log.
                self._live = None
                await asyncio.to_thread(self.storage.segments.apply, [], checkpoint=upto)
                self._position = upto
                return 0
            rows = await self.storage.log.read(after, self.chunk, upto_seq=upto)
            until = rows[-1].seq if len(rows) >= self.chunk else upto
            if self.profiles_upto is not None:
                await self.profiles_upto(until)
            heads = [_head(row.body) for row in rows]  # once, for both uses below
            await self._advance_live(after, rows, until, heads)
            touched: dict[str, bool] = {}
            names: dict[str, Touched | None] = {}
            for row, head in zip(rows, heads, strict=True):
                touch_named(touched, names, row, head)
            await self.reevaluate(touched, checkpoint=until, names=names)
            self._position = until
            return len(rows)

    def _followed(self, every: list[Segment]) -> list[Segment]:
        """The segments the follower and the scheduler keep: all but those being built."""
        return [s for s in every if s.id not in self.building] if self.building else every

    async def _advance_live(self, after: int, rows: list[StoredEvent], until: int,
                            heads: Sequence[Head] | None = None) -> None:
        """Bring the running state (:mod:`.live`) to ``until`` with the follower's
        ``rows`` (after ``after``); remade from the log when the followed definitions
        changed, at start, or after :meth:`invalidate`."""
        every, definitions = self.definitions()
        segments = self._followed(every)
        if not segments:
            self._live = None
            return
        key = key_of(segments, every, definitions)
        live = self._live
        if live is not None and live.matches(key, after):
            live.feed(rows, until, heads)
            return
        self._live = None  # let the old one go before the new one is made
        saved, self._saved = self._saved, None
        taken = None if saved is None else await LiveState.taken_up(
            self.storage, key, segments, definitions, saved, after)
        if taken is not None:
            log.info("segment follower: took up the state saved at the last stop (%s ids"
                     " at log seq %s) instead of scanning the log",
                     f"{len(taken.scan.dump()[0]):,}", f"{after:,}")
            taken.feed(rows, until, heads)
            self._live = taken
        else:
            if saved is not None:
                why = f"it was saved at log seq {saved.upto:,}, the follower is at {after:,}" \
                    if saved.upto != after else "the segments or their definitions changed"
                log.info("segment follower: the state saved at the last stop is not this"
                         " one (%s); scanning the log", why)
            self._live = await LiveState.rebuild(self.storage, key, segments, definitions,
                                                 until)
        # The state is millions of long-lived objects (per id, per condition, event
        # times); a full collection walks all of them, a fifth of the follower's CPU and
        # a pause of a few hundred ms each time. Frozen, collections skip them: they are
        # freed by reference counting (no cycles) when the state is let go.
        heap.freeze_survivors()

    def withhold(self, ids: Sequence[str]) -> None:
        """A deletion is removing the people of ``ids``: write nothing for them, no row
        and no Audience event, until it is done (:meth:`release`).

        Why: their events leave the log before their rows do (``regulations.job``), and
        meanwhile the scheduler, the follower or a build may still evaluate them, from
        state that still counts those events or from none left (an exit). An Audience
        event appended then would outlive the deletion in the log and go out to
        destinations (a deletion screens only the events before it), and a row written
        after the deletion removed theirs would keep their ids."""
        self.withheld.update(ids)

    def release(self, ids: Sequence[str]) -> None:
        """The deletion that withheld ``ids`` is done with the segments. Once no build is
        running: a build that began before may hold their events in its scan, and would
        evaluate them after the deletion removed their rows."""
        self._released += ids
        if not self.removals:
            self.builds_ended()

    def builds_ended(self) -> None:
        """No build is running: the ids released meanwhile are no longer withheld."""
        released, self._released = self._released, []
        self.withheld.subtract(released)
        for one in set(released):
            if self.withheld[one] <= 0:
                del self.withheld[one]

    async def rows_erased(self, ids: Sequence[str]) -> None:
        """A deletion removed every row naming ``ids`` from the store, not through the
        engine: the running state's row cache forgets them now, and each running build's
        cache at its end. Else a person who comes back would read as still a member, and
        enter with no Audience event."""
        async with self.lock:
            if self._live is not None:
                self._live.rows.forget(ids)
            for erased in self.erasures:
                erased += ids

    def invalidate(self) -> None:
        """Events left the log and nobody knows whose (a deletion that could not read
        them first): remake the running state from the log at the follower's next read,
        so they no longer count."""
        self._live = None
        self.epoch += 1
        self._forget_saved()

    def _forget_saved(self) -> None:
        """The log's past changed: a state saved before is no longer it."""
        self._may_take_up = False
        self._saved = None

    async def take_saved(self) -> None:
        """At start: read (and remove) the state saved at the last stop, to take up at
        the follower's first read if it is still exact (:mod:`.saved_state`)."""
        if self.saved_state is None:
            return
        saved = await asyncio.to_thread(take, self.saved_state)  # removed whatever comes
        if self._may_take_up:  # nothing removed since the start
            self._saved = saved

    async def prepare(self) -> None:
        """At start: make the running state (or take up the saved one) now, not at the
        first event after the start, which would wait for it."""
        async with self.lock:
            if self._live is None:
                position = self.position()
                await self._advance_live(position, [], position)

    def save_state(self) -> None:
        """At a clean stop, every task of the engine stopped: save the running state
        for the next start, if it is the state at the follower's checkpoint (a tick cut
        short may have fed it past that)."""
        live = self._live
        if self.saved_state is None or live is None or live.upto != self.position():
            return
        try:
            size = save(self.saved_state, live.key, live.scan, live.upto)
        except Exception:  # noqa: BLE001 - a stop goes on: the next start scans the log
            log.exception("segment follower: state not saved; the next start scans the log")
            return
        log.info("segment follower: state saved for the next start (%s ids at log seq %s,"
                 " %s bytes)", f"{len(live.scan.dump()[0]):,}", f"{live.upto:,}",
                 f"{size:,}")

    async def events_removed(self, owners: Mapping[str, bool]) -> int:
        """Retention or a deletion removed events of ``owners`` (``Expiry.owners``,
        ``PersonEraser.event_owners``: id -> is a user id): evaluate those people again
        without them in every followed segment, and note them for the builds running
        (:attr:`removals`: each does the same for its own segments at its end). Returns
        how many memberships changed.

        The running state forgets what the owners' events added and takes in what is
        left of them; a part of the owners at a time (:mod:`.removed`). Why not
        :meth:`invalidate`: retention removes events every minute on a source that has
        one, and remaking the state reads the whole log while holding the lock, with no
        live update in any segment meanwhile."""
        changed = 0
        if owners:
            self._forget_saved()
        # Without segments there is nothing derived (a build made later reads the log
        # as it is then): no profile reads per retention step.
        if owners and self.storage.segments.list():
            for part in await asyncio.to_thread(parts_of, self.storage, owners):
                changed += await self._without(part)
        return changed

    async def _without(self, owners: dict[str, bool]) -> int:
        """:meth:`events_removed` for one part: the owners' events are read up to where
        the running state stands before taking the lock, and under it only those the
        follower took in since."""
        live = self._live
        mark = None if live is None else live.upto
        read = [] if mark is None else await owned_events(self.storage, owners, mark)
        async with self.lock:
            for pending in self.removals:
                add_owners(pending, owners)
            state = self._live
            if state is not None:
                if state is live and mark is not None:
                    read += await owned_between(self.storage.log, owners, mark, state.upto)
                else:  # made again since: read it all now
                    read = await owned_events(self.storage, owners, state.upto)
                state.scan.forget(owners)
                state.scan.feed(read)
            return await self.reevaluate(owners)

    async def adopt(self, scan: LogScan, definitions: Mapping[str, Condition],
                    built: Sequence[Segment], every_then: Sequence[Segment], upto: int,
                    epoch: int, rows: RowCache | None = None) -> bool:
        """Make a build's ``scan`` (of ``built``, from ``definitions`` as they were with
        ``every_then`` segments, fed the log up to ``upto``) part of the follower's
        running state; under :attr:`lock`, once the build's segments are followed.

        Why: the follower would otherwise remake its state for the new set of segments
        with one more scan of the whole log, holding the lock (so no live update in any
        segment) for as long as the build's own scan took. Joined to the state it has
        (whose slots are the other segments'), the build's scan is that state. Declined
        (False: the follower remakes it as before) unless it is exact: the follower is
        at ``upto`` with a state for exactly the other followed segments, no
        definition changed and no deletion (:meth:`invalidate`) came since the build
        began (``epoch``). ``rows``: the built segments' stored rows, kept by the build
        as it wrote them (:meth:`RowCache.joined`); without them (or incomplete), every
        followed segment's rows are read again."""
        if epoch != self.epoch or upto != self.position():
            return False
        every, current = self.definitions()
        followed = self._followed(every)
        ids = {s.id for s in built}
        mine = [s for s in followed if s.id in ids]
        if not mine or key_of(mine, every_then, definitions) != key_of(mine, every, current):
            return False
        others = [s for s in followed if s.id not in ids]
        merged = {**definitions}
        theirs: RowCache | None = None
        if others:
            live = self._live
            if live is None or not live.matches(key_of(others, every, current), upto):
                return False
            scan = live.scan.joined(scan)
            merged = {**live.definitions, **{s.key: definitions[s.key] for s in mine}}
            theirs = live.rows
        if not scan.covers(event_conditions(merged, [s.key for s in followed])):
            return False  # an in_segment reaches a segment neither scan has slots for
        scan.ids.clear()
        self._live = None
        state = LiveState(key_of(followed, every, current), merged, scan, upto)
        # A built segment deleted meanwhile still has rows in the build's cache.
        if rows is not None and len(mine) == len(built):
            state.rows = await asyncio.to_thread(rows.joined, theirs)
        else:
            await asyncio.to_thread(state.rows.fill, self.storage.segments,
                                    [s.id for s in followed])
        self._live = state
        heap.freeze_survivors()  # as after a rebuild (see _advance_live)
        return True

    # -- the scheduler --------------------------------------------------------------------

    async def run_due(self, limit: int = 1000) -> int:
        """Re-evaluate the people whose scheduled change has come; how many rows were due."""
        async with self.lock:
            due = self.storage.segments.due(self.clock(), limit)
            if due:
                await self.reevaluate({row.user_id or row.anonymous_id or row.ids[0]:
                                       row.user_id is not None for row in due if row.ids})
            return len(due)

    # -- building -----------------------------------------------------------------------

    async def build(self, segment_id: str) -> Segment:
        """Build one segment over the log (:mod:`.build`); the segment, ``ready``."""
        built = await self.build_many([segment_id])
        return built[0] if built else self.storage.segments.get(segment_id)

    async def build_many(self, segment_ids: list[str]) -> list[Segment]:
        """Build several segments with one scan of the log (:mod:`.build`)."""
        from .build import build_segments
        return await build_segments(self, segment_ids)

    def position(self) -> int:
        """The last log seq the follower has taken in."""
        return self.storage.segments.checkpoint() if self._position is None \
            else self._position

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Follow the log and run the schedule until ``stop`` is set."""
        loop = asyncio.get_running_loop()
        try:
            await self.take_saved()
            await self.prepare()
        except Exception:  # noqa: BLE001 - the first read makes the state instead
            log.exception("segment follower: the running state could not be made at start")
        while stop is None or not stop.is_set():
            started = loop.time()
            try:
                read = await self.catch_up_once()
                await self.run_due()
            except StorageUnavailable:  # a full disk: the storage logs the episode, once
                await asyncio.sleep(1)
                continue
            except Exception:  # noqa: BLE001 - keep following; the checkpoint did not move
                log.exception("segment engine failed; retrying in 1 s")
                await asyncio.sleep(1)
                continue
            if read < self.chunk:
                await self.storage.log.wait(self._position or 0, 0.5)
                # Coalesce: ticks start at least COALESCE_SECONDS apart, counted from the
                # start of the last one, so a tick that took that long already let the
                # commits pile up and the next starts at once (a fixed sleep after each
                # tick added its length to every event's delay under load). Always a
                # sleep, if only sleep(0): once the server stops, ``wait`` returns at
                # once, and a loop that never awaits anything real would starve the
                # event loop.
                await asyncio.sleep(max(0.0, COALESCE_SECONDS - (loop.time() - started)))
