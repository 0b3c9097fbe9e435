"""The follower's running state (segments/live.py): live events are evaluated without
reading anyone's history, and the state is remade where it must be (a restart, a
regulation's deletion)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from millpond.segments.engine import SegmentEngine
from millpond.segments.live import RowCache
from millpond.segments.outputs import message_id
from millpond.storage.models import Member
from millpond.timeutil import format_ms, parse_iso_ms

from .harness import DAY, Clock, Counted, Harness, identify, run_async, track

NOW = parse_iso_ms("2026-06-01T00:00:00Z")


@run_async
async def test_a_live_event_reads_no_history_and_counts_in_event_time(storage):
    h = Harness(storage, Clock(NOW))
    await h.send(track("o1", NOW - 400 * DAY, user_id="ann"),
                 track("v1", NOW - 5 * DAY, "Viewed", user_id="bob"))
    await h.add_segment("s1", "repeat", {"event": "Order Completed", "at_least": 2,
                                         "within": "365d"})
    await h.settle()
    index = Counted(storage.index, "person_events")
    rows = Counted(storage.segments, "by_ids")
    # Out of order: a purchase from 10 days ago arrives, then one from 3 days ago. The
    # 400-day-old one is outside the window: ann enters only with the second.
    await h.send(track("o2", NOW - 10 * DAY, user_id="ann"))
    await h.settle()
    assert storage.segments.count_members("s1") == 0
    await h.send(track("o3", NOW - 3 * DAY, user_id="ann"))
    await h.settle()
    [member] = storage.segments.members("s1").members
    assert member.user_id == "ann" and member.since_ms == NOW - 3 * DAY
    assert member.next_change_ms == NOW - 10 * DAY + 365 * DAY
    assert index.calls == 0  # the running state had everything
    assert rows.calls == 0  # ann's rows were read once, by the settle above, and kept
    last = (await h.audience_events())[-1]
    assert (last["event"], last["timestamp"]) == ("Audience Entered",
                                                  "2026-05-29T00:00:00.000Z")


@run_async
async def test_the_row_cache_is_filled_whole_and_keeps_new_people(storage):
    """The running state reads every stored row of its segments when it is made, so no
    person a tick touches is looked up by id; a person first seen afterwards has no row
    until the follower writes one, and that row is found by their next event."""
    h = Harness(storage, Clock(NOW))
    await h.send(track("o1", NOW - 3 * DAY, user_id="ann"))
    await h.add_segment("s1", "once", {"event": "Order Completed", "at_most": 1,
                                       "at_least": 1})
    await h.settle()
    rows = Counted(storage.segments, "by_ids")
    await h.send(track("o2", NOW - 2 * DAY, user_id="ann"),
                 track("o3", NOW - 2 * DAY, user_id="new"))
    await h.settle()
    assert [m.user_id for m in storage.segments.members("s1").members] == ["new"]
    await h.send(track("o4", NOW - DAY, user_id="new"))
    await h.settle()
    assert storage.segments.count_members("s1") == 0
    assert [(e["userId"], e["event"]) for e in await h.audience_events()] == [
        ("ann", "Audience Entered"), ("ann", "Audience Exited"),
        ("new", "Audience Entered"), ("new", "Audience Exited")]
    assert rows.calls == 0


@run_async
async def test_a_restarted_engine_counts_what_came_before(storage):
    h = Harness(storage, Clock(NOW))
    await h.add_segment("s1", "repeat", {"event": "Order Completed", "at_least": 2})
    await h.send(track("o1", NOW - 2 * DAY, user_id="cat"))
    await h.settle()
    assert storage.segments.count_members("s1") == 0
    # A new process: a new engine over the same store, remaking its state from the log.
    h.engine = SegmentEngine(storage, clock=h.clock, profiles_upto=h._profiles_upto)
    await h.send(track("o2", NOW - DAY, user_id="cat"))
    await h.settle()
    [member] = storage.segments.members("s1").members
    assert member.user_id == "cat" and member.since_ms == NOW - DAY


@run_async
async def test_events_a_deletion_removed_stop_counting(storage):
    h = Harness(storage, Clock(NOW))
    await h.add_segment("s1", "repeat", {"event": "Order Completed", "at_least": 2})
    await h.send(track("o1", NOW - 2 * DAY, user_id="dan"))
    await h.settle()
    storage.eraser.events(["dan"])
    h.engine.invalidate()  # what the server's regulation settle does
    await h.send(track("o2", NOW - DAY, user_id="dan"))
    await h.settle()
    # Only the purchase after the deletion counts: one, not two.
    assert storage.segments.count_members("s1") == 0


@run_async
async def test_a_tick_reads_no_history_and_no_profile_one_by_one(storage):
    """The follower resolves a tick's people with one profile read and counts the earlier
    changes each messageId includes with one history read: the ids are still the
    segment, person, change and how many changes came before."""
    h = Harness(storage, Clock(NOW))
    await h.add_segment("s1", "pro", {"trait": "plan", "op": "eq", "value": "pro"})
    await h.settle()
    history = Counted(storage.segments, "history")
    profiles = Counted(storage.profiles, "get")
    times = [NOW - 3 * DAY, NOW - 2 * DAY, NOW - DAY]
    for n, (plan, ts) in enumerate(zip(["pro", "free", "pro"], times, strict=True)):
        await h.send(identify(f"i{n}", ts, user_id="eve", plan=plan),
                     identify(f"j{n}", ts, user_id=f"other{n}", plan="free"))
        await h.settle()
    assert history.calls == 0 and profiles.calls == 0
    person = storage.profiles.get("eve")["id"]
    said = await h.audience_events()
    assert [e["event"] for e in said] == ["Audience Entered", "Audience Exited",
                                          "Audience Entered"]
    # Each change is at the time of the update that made it ("free" ends "pro").
    assert [e["timestamp"] for e in said] == [format_ms(t) for t in times]
    assert [e["messageId"] for e in said] == [
        message_id("s1", person, e["event"] == "Audience Entered",
                   parse_iso_ms(e["timestamp"]), n) for n, e in enumerate(said)]
    assert len(storage.segments.history(person, "s1")) == 3


# -- the row cache against a plain model of the store ------------------------------------

_ids = st.sampled_from(["a", "b", "c", "d", "e"])
_rows = st.builds(lambda seg, person, ids, member: Member(seg, person, member, 1, None,
                                                           None, None, tuple(sorted(ids))),
                  st.sampled_from(["s1", "s2"]), st.sampled_from(["p1", "p2", "p3"]),
                  st.sets(_ids, min_size=1, max_size=3), st.booleans())
_steps = st.lists(st.one_of(
    st.tuples(st.just("write"), st.lists(_rows, max_size=4),
              st.lists(st.tuples(st.sampled_from(["s1", "s2"]),
                                 st.sampled_from(["p1", "p2", "p3"])), max_size=2)),
    st.tuples(st.just("ask"), st.lists(_ids, min_size=1, max_size=3))), max_size=14)


class _Model:
    """The store as a dict, and what the cache must answer of it."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Member] = {}

    def write(self, rows, drop) -> None:
        for key in drop:
            self.rows.pop(key, None)
        for row in rows:
            self.rows[(row.segment_id, row.person_id)] = row

    def naming(self, ids) -> dict[tuple[str, str], Member]:
        return {k: r for k, r in self.rows.items() if set(r.ids) & set(ids)}

    def run(self, cache: RowCache, steps) -> None:
        """Writes go to both; each ask must get from the cache what the store holds."""
        for step in steps:
            if step[0] == "write":
                _, rows, drop = step
                self.write(rows, drop)
                cache.written(rows, drop)
                assert not cache.complete or len(cache._by_id) <= cache.limit
                continue
            ids = step[1]
            missing = cache.missing(ids)
            if missing:
                cache.load(missing, list(self.naming(missing).values()))
            got = cache.rows_of(ids)
            assert all(self.rows.get((r.segment_id, r.person_id)) == r for r in got)
            named = {(r.segment_id, r.person_id): r for r in got if set(r.ids) & set(ids)}
            assert named == self.naming(ids)


@given(start=st.lists(_rows, max_size=6), steps=_steps, filled=st.booleans(),
       limit=st.sampled_from([3, 100]))
@settings(max_examples=300, deadline=None)
def test_the_row_cache_answers_as_the_store_does(start, steps, filled, limit):
    """Whatever the writes (a merge moves ids between rows, drops remove them), every row
    the store holds naming an asked id comes back from the cache as stored, and nothing
    the store no longer holds does; filled whole or filled by misses, and past its
    limit (of ids) too."""
    model = _Model()
    model.write(start, [])
    cache = RowCache(limit)
    if filled:
        cache.fill(_Store(model.rows), ["s1", "s2"])
    model.run(cache, steps)


@given(start=st.lists(_rows, max_size=6), before=_steps, after=_steps,
       limit=st.sampled_from([2, 100]))
@settings(max_examples=300, deadline=None)
def test_two_caches_joined_answer_as_the_store_does(start, before, after, limit):
    """A build's cache (segment s1, kept as it wrote) joined to the follower's (s2): the
    one cache then answers as one filled from the store would, and stays exact through
    later writes; past its limit, it works by misses."""
    model = _Model()
    model.write(start, [])
    caches = {sid: RowCache(limit) for sid in ("s1", "s2")}
    for sid, cache in caches.items():
        cache.fill(_Store(model.rows), [sid])
    for step in before:  # each segment's writes go to its own cache
        if step[0] == "write":
            _, rows, drop = step
            model.write(rows, drop)
            for sid, cache in caches.items():
                cache.written([r for r in rows if r.segment_id == sid],
                              [k for k in drop if k[0] == sid])
    complete = caches["s1"].complete and caches["s2"].complete
    joined = caches["s1"].joined(caches["s2"])
    if limit == 100 or not complete:  # five ids: only a limit of 2 can be passed
        assert joined.complete == complete
    assert not joined.complete or len(joined._by_id) <= limit
    model.run(joined, [("ask", ["a", "b", "c", "d", "e"]), *after])


class _Store:
    """What ``RowCache.fill`` reads of a SegmentStore."""

    def __init__(self, rows: dict[tuple[str, str], Member]) -> None:
        self._rows = rows

    def rows(self, segment_id: str) -> list[Member]:
        return sorted((r for (s, _), r in self._rows.items() if s == segment_id),
                      key=lambda r: r.person_id)
