"""Building (segments/build.py): the build's scan of the log becomes the follower's
running state (``SegmentEngine.adopt``), joined to the state the follower already has,
so the follower does not read the whole log again; and the memberships that follow are
the same as those of an engine that read it again."""

import msgspec
import pytest

from millpond.segments import build, live
from millpond.segments.live import LiveState, RowCache
from millpond.storage import StorageConfig, open_storage
from millpond.storage.models import Member, Segment
from millpond.timeutil import parse_iso_ms

from .harness import DAY, Clock, Counted, Harness, identify, run_async, track

NOW = parse_iso_ms("2026-06-01T00:00:00Z")
FIRST = ("s1", "repeat", {"event": "Order Completed", "at_least": 2, "within": "30d"})
SECOND = ("s2", "viewers", {"all": [{"event": "Viewed"}, {"not": {"in_segment": "repeat"}},
                                    {"trait": "plan", "op": "eq", "value": "pro"}]})


class Rebuilds:
    """Counts the follower's remakes of its running state from the log."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        inner = LiveState.rebuild

        async def rebuild(*args, **kwargs):
            self.calls += 1
            return await inner(*args, **kwargs)

        monkeypatch.setattr(LiveState, "rebuild", rebuild)


async def scenario(h: Harness, *, meanwhile: bool) -> None:
    """Two segments, the second made while the first is followed; ``meanwhile``: events
    arrive and the follower takes them in while the second is being built (after its
    scan), so the build's scan is brought up to the follower before it is adopted."""
    await h.send(track("o1", NOW - 20 * DAY, user_id="ann"),
                 track("v1", NOW - 9 * DAY, "Viewed", user_id="bob"),
                 identify("i1", NOW - 9 * DAY, user_id="bob", plan="pro"),
                 track("v2", NOW - 8 * DAY, "Viewed", user_id="ann"),
                 identify("i2", NOW - 8 * DAY, user_id="ann", plan="pro"))
    await h.settle()  # as a running server's follower has
    await h.add_segment(*FIRST)
    await h.settle()
    later = [track("o2", NOW - 5 * DAY, user_id="ann"),  # ann: 2 orders, leaves s2
             track("v3", NOW - 4 * DAY, "Viewed", user_id="cat"),
             identify("i3", NOW - 4 * DAY, user_id="cat", plan="pro")]
    if meanwhile:
        people = build.people_of

        async def people_then_more(engine, scan):
            await h.send(*later)
            await h.settle()  # the follower takes them in for s1, not s2 (building)
            return await people(engine, scan)

        build.people_of = people_then_more
        try:
            await h.add_segment(*SECOND)
        finally:
            build.people_of = people
    else:
        await h.add_segment(*SECOND)
        await h.send(*later)
    await h.settle()
    # Live, after the build: bob orders twice (enters s1, leaves s2), cat once; ann
    # again (stays in s1: the follower knows her row from before the build).
    await h.send(track("o3", NOW - 3 * DAY, user_id="bob"),
                 track("o4", NOW - 2 * DAY, user_id="bob"),
                 track("o5", NOW - DAY, user_id="cat"),
                 track("o6", NOW - DAY, user_id="ann"))
    await h.settle()


def members(h: Harness) -> dict[str, list[tuple[str | None, int | None]]]:
    return {sid: sorted((m.user_id, m.since_ms) for m in h.storage.segments.members(sid).members)
            for sid in ("s1", "s2")}


@pytest.mark.parametrize(("meanwhile", "row_limit"), [(False, None), (True, None), (True, 2)])
@run_async
async def test_the_follower_takes_the_builds_scan_instead_of_reading_the_log_again(
        storage, meanwhile, row_limit, tmp_path, monkeypatch):
    """``row_limit``: the row caches' bound (ids); 2 makes every one of them give up and
    work by misses."""
    if row_limit is not None:
        monkeypatch.setattr(live, "ROW_CACHE_IDS", row_limit)
    rebuilds = Rebuilds(monkeypatch)
    h = Harness(storage, Clock(NOW))
    handed: list[RowCache] = []
    adopt = h.engine.adopt

    async def adopt_and_see(*args):
        handed.append(args[-1])
        return await adopt(*args)

    h.engine.adopt = adopt_and_see  # type: ignore[method-assign]
    await scenario(h, meanwhile=meanwhile)
    # The second build's cache (three people's ids): past a bound of 2 it gave up and
    # kept nothing; else it had every row.
    last = handed[-1]
    assert len(handed) == 2 and last.complete == (row_limit is None)
    assert bool(last._rows) == (row_limit is None)
    assert rebuilds.calls == 0
    assert members(h) == {"s1": [("ann", NOW - 5 * DAY), ("bob", NOW - 2 * DAY)],
                          "s2": [("cat", NOW - 4 * DAY)]}

    # The same, with an engine that remakes its state from the log after each build.
    fresh = open_storage(StorageConfig(backend="memory", data_dir=str(tmp_path / "m")))
    other = Harness(fresh, Clock(NOW))
    other.engine.adopt = _declined  # type: ignore[method-assign]
    await scenario(other, meanwhile=meanwhile)
    assert rebuilds.calls >= 1
    assert members(other) == members(h)
    assert [e["event"] for e in await other.audience_events()] == \
        [e["event"] for e in await h.audience_events()]


async def _declined(*args, **kwargs) -> bool:
    return False


@run_async
async def test_a_deletion_during_a_build_makes_the_follower_read_the_log_again(
        storage, monkeypatch):
    """A regulation's deletion while the build scanned: its scan may count erased events,
    so the follower remakes its state instead."""
    h = Harness(storage, Clock(NOW))
    await h.send(track("o1", NOW - 3 * DAY, user_id="dan"))
    await h.settle()
    people = build.people_of

    async def erase_then_people(engine, scan):
        storage.eraser.events(["dan"])
        engine.invalidate()
        return await people(engine, scan)

    build.people_of = erase_then_people
    try:
        storage.segments.create(Segment("s1", "once", "Once", {"event": "Order Completed"},
                                        created_ms=NOW))
        await h.engine.build("s1")
    finally:
        build.people_of = people
    rebuilds = Rebuilds(monkeypatch)
    await h.send(track("o2", NOW - DAY, user_id="eve"))
    await h.settle()
    assert rebuilds.calls == 1


@run_async
async def test_a_rebuild_after_a_definition_change_is_adopted_with_the_new_definition(
        storage, monkeypatch):
    h = Harness(storage, Clock(NOW))
    await h.send(track("o1", NOW - 3 * DAY, user_id="ann"),
                 track("o2", NOW - 2 * DAY, user_id="ann"),
                 track("o3", NOW - 2 * DAY, user_id="bob"),
                 # cat's second and third orders at one time: the same row either way.
                 *(track(f"c{n}", ts, user_id="cat")
                   for n, ts in enumerate([NOW - 4 * DAY, NOW - 3 * DAY, NOW - 3 * DAY])))
    await h.settle()
    await h.add_segment("s1", "buyers", {"event": "Order Completed"})
    await h.add_segment("s2", "repeat", {"event": "Order Completed", "at_least": 2})
    await h.settle()
    assert sorted(m.user_id for m in storage.segments.members("s2").members) == ["ann", "cat"]
    rebuilds = Rebuilds(monkeypatch)
    # As a PATCH of the definition does: the record changes, then the segment is rebuilt,
    # while the follower goes on for s1 (and remakes its state for s1 alone).
    before = storage.segments.get("s2")
    storage.segments.update(msgspec.structs.replace(
        before, definition={"event": "Order Completed", "at_least": 3}))
    people = build.people_of

    async def people_then_more(engine, scan):
        await h.send(track("o4", NOW - DAY, user_id="bob"))
        await h.settle()
        return await people(engine, scan)

    monkeypatch.setattr(build, "people_of", people_then_more)
    await h.engine.build("s2")
    assert rebuilds.calls == 1  # the follower's, for s1 while s2 was being built
    assert [m.user_id for m in storage.segments.members("s2").members] == ["cat"]
    lookups = Counted(storage.segments, "by_ids")
    await h.send(track("o5", NOW - 60_000, user_id="ann"),
                 track("o6", NOW - 60_000, user_id="bob"),
                 track("c3", NOW - 60_000, user_id="cat"))
    await h.settle()
    assert rebuilds.calls == 1  # the build's scan was adopted
    assert sorted(m.user_id for m in storage.segments.members("s2").members) == \
        ["ann", "bob", "cat"]
    # cat stayed in through the rebuild and the live order: entered once.
    assert [e["event"] for e in await h.audience_events()
            if e["userId"] == "cat" and e["properties"]["segment_id"] == "s2"] == \
        ["Audience Entered"]
    # The follower had every row of both segments: the build's, kept as it wrote them.
    assert lookups.calls == 0


@run_async
async def test_a_failed_handover_leaves_the_build_done_and_says_so(storage, monkeypatch,
                                                                   caplog):
    h = Harness(storage, Clock(NOW))
    await h.send(track("o1", NOW - DAY, user_id="ann"))
    await h.settle()

    def no_room(*args):
        raise MemoryError("no room for the rows")

    monkeypatch.setattr(RowCache, "joined", no_room)
    seg = await h.add_segment("s1", "buyers", {"event": "Order Completed"})
    assert seg.state == "ready" and storage.segments.count_members("s1") == 1
    assert "could not hand a build's scan to the segment follower" in caplog.text
    monkeypatch.undo()
    rebuilds = Rebuilds(monkeypatch)
    await h.send(track("o2", NOW - 60_000, user_id="bob"))
    await h.settle()
    assert rebuilds.calls == 1 and storage.segments.count_members("s1") == 2


def test_a_builds_cache_past_its_bound_keeps_nothing_more():
    """Once a build's row cache has given up (its ids past the bound), the build's later
    batches are not kept in it: they would only take memory until the end, unreachable."""

    class Store:
        def apply(self, rows, *, drop):
            pass

    cache = RowCache(limit=1)
    cache.fill_from([])
    for person in ("p1", "p2", "p3"):
        build._write(Store(), cache,  # type: ignore[arg-type]
                     [Member("s1", person, True, 1, None, person, None, (person,), 0)], [])
    assert not cache.complete and not cache._rows


@run_async
async def test_a_builds_audience_events_are_appended_a_part_at_a_time(storage, monkeypatch):
    """The log commits a submission whole and in order: a collector's event waits for
    the one before it. A build appends its Audience events in parts, so none waits for a
    whole batch of them."""
    monkeypatch.setattr(build, "APPEND_CHUNK", 7)
    h = Harness(storage, Clock(NOW))
    await h.send(*(track(f"o{n}", NOW - DAY, user_id=f"u{n}") for n in range(30)))
    sizes: list[int] = []
    append = storage.log.append

    async def counted(events):
        if any(e.source_id == "computed" for e in events):
            sizes.append(len(events))
        return await append(events)

    monkeypatch.setattr(storage.log, "append", counted)
    await h.add_segment("s1", "buyers", {"event": "Order Completed"})
    assert sum(sizes) == 30 and max(sizes) == 7, sizes
