"""Retention and segments: when the retention job removes events, the people who owned
them are evaluated again without them (``SegmentEngine.events_removed``), in the
follower's segments and in a build running meanwhile, and the follower's running state
stops counting them, so later live events are counted against what is left."""

import asyncio

import pytest

from millpond.retention.expiry import RetentionJob
from millpond.segments import build, removed
from millpond.segments.service import SegmentService
from millpond.sources.service import SourceService
from millpond.storage.models import Segment
from millpond.timeutil import parse_iso_ms

from .harness import DAY, Clock, Harness, identify, run_async, track

NOW = parse_iso_ms("2026-06-01T00:00:00Z")
BUYERS = {"event": "Order Completed"}
REPEAT = {"event": "Order Completed", "at_least": 2}
FEW = {"event": "Order Completed", "at_most": 3}


async def _shop(storage) -> tuple[Harness, RetentionJob, str]:
    """A source keeping 30 days of arrivals. 40 days ago arrived an order of ann's and
    one of bob's (event times older still); today one more of bob's and two of cat's.
    The job runs on the harness's clock and tells the engine what it removed."""
    h = Harness(storage, Clock(NOW - 40 * DAY))
    sources = SourceService(storage.sources)
    web = sources.create("web", retention="30d").id
    await h.send(track("ann-old", NOW - 45 * DAY, user_id="ann"),
                 track("bob-old", NOW - 44 * DAY, user_id="bob"), source_id=web)
    h.clock.now = NOW
    await h.send(track("bob-new", NOW - 2 * DAY, user_id="bob"),
                 track("cat-1", NOW - 3 * DAY, user_id="cat"),
                 track("cat-2", NOW - DAY, user_id="cat"), source_id=web)
    job = RetentionJob(storage.log, sources, clock=h.clock,
                       on_removed=SegmentService(storage, h.engine).events_removed)
    return h, job, web


def _members(h: Harness, segment_id: str) -> set[str]:
    return {m.user_id for m in h.storage.segments.members(segment_id).members
            if m.user_id is not None}


@pytest.mark.parametrize("part", [removed.PART, 1])
@run_async
async def test_removed_events_no_longer_count_live_or_in_the_stored_memberships(
        storage, part, monkeypatch):
    monkeypatch.setattr(removed, "PART", part)  # 1: each owner under the lock on its own
    h, job, web = await _shop(storage)
    await h.add_segment("s1", "buyers", BUYERS)
    await h.add_segment("s2", "repeat", REPEAT)
    await h.settle()
    assert (_members(h, "s1"), _members(h, "s2")) == ({"ann", "bob", "cat"}, {"bob", "cat"})
    # A new order of ann's the follower has not read yet when retention runs: the
    # running state, read again for ann, must not take it in twice.
    await h.send(track("ann-new", NOW - 3_600_000, user_id="ann"), source_id=web)

    assert await job.run_once() == {web: 2}
    assert _members(h, "s2") == {"cat"}  # before the follower moves on
    await h.settle()
    assert (_members(h, "s1"), _members(h, "s2")) == ({"ann", "bob", "cat"}, {"cat"})
    exits = [(e["userId"], e["properties"]["audience_key"]) for e in await h.audience_events()
             if e["event"] == "Audience Exited"]
    assert exits == [("ann", "buyers"), ("bob", "repeat")]  # ann came back with ann-new

    # What a build over the log as it is now finds is what the engine keeps.
    await h.add_segment("s3", "buyers-again", BUYERS)
    await h.add_segment("s4", "repeat-again", REPEAT)
    assert (_members(h, "s3"), _members(h, "s4")) == ({"ann", "bob", "cat"}, {"cat"})
    # Live events count against what is left: bob's next order makes two, not three.
    await h.send(track("bob-next", NOW - 60_000, user_id="bob"), source_id=web)
    await h.settle()
    assert _members(h, "s2") == _members(h, "s4") == {"bob", "cat"}


@run_async
async def test_a_build_running_while_retention_removes_events_ends_without_them(
        storage, monkeypatch):
    h, job, web = await _shop(storage)
    real = build.people_of
    expired: list[dict[str, int]] = []

    async def people_then_expire(engine, scan):
        people = await real(engine, scan)
        if not expired:  # the scan has counted ann-old and bob-old
            expired.append(await job.run_once())
        return people

    monkeypatch.setattr(build, "people_of", people_then_expire)
    await h.settle()  # the follower at the log's end: the build's scan becomes its state
    three = {"event": "Order Completed", "at_least": 3}
    for sid, key, definition in (("s1", "buyers", BUYERS), ("s2", "three", three)):
        h.storage.segments.create(Segment(sid, key, key, definition, created_ms=NOW))
    await h.engine.build_many(["s1", "s2"])  # one build, one scan
    assert expired == [{web: 2}]
    assert _members(h, "s1") == {"bob", "cat"}  # ann's only order is gone
    # ann, evaluated again from the build's scan (an identify: in every segment), has
    # no order either.
    await h.send(identify("ann-id", NOW - 60_000, user_id="ann"), source_id=web)
    await h.settle()
    assert _members(h, "s1") == {"bob", "cat"}
    # The follower's state is the build's scan: it must count bob's one order left, so
    # two more make three, not four.
    await h.send(track("bob-next", NOW - 60_000, user_id="bob"), source_id=web)
    await h.settle()
    assert _members(h, "s2") == set()
    await h.send(track("bob-last", NOW - 30_000, user_id="bob"), source_id=web)
    await h.settle()
    assert _members(h, "s2") == {"bob"}


@run_async
async def test_a_failed_re_evaluation_is_logged_and_retention_goes_on(storage, caplog):
    _h, job, web = await _shop(storage)

    async def failing(source_id, before_ms, step):
        raise RuntimeError("disk gone")

    job.on_removed = failing
    assert await job.run_once() == {web: 2}
    assert "could not re-evaluate the segments of 2 people whose events of source web" \
        in caplog.text


@pytest.mark.parametrize("remade", [False, True])
@run_async
async def test_events_the_follower_takes_in_while_the_owners_are_read_still_count(
        storage, monkeypatch, remade):
    """The owners' events are read before the lock; an event of theirs the follower
    takes in meanwhile (after the running state was remade, with ``remade``) counts."""
    h, job, web = await _shop(storage)
    await h.add_segment("s2", "repeat", REPEAT)
    await h.add_segment("s3", "few", FEW)
    await h.settle()
    real = removed.owned_events
    calls = 0

    async def read_then_follow(storage, owners, upto):
        nonlocal calls
        rows = await real(storage, owners, upto)
        calls += 1
        if calls == 1:  # orders of bob's and cat's arrive and are followed
            await h.send(track("bob-mid", NOW - 60_000, user_id="bob"),
                         track("cat-3", NOW - 60_000, user_id="cat"), source_id=web)
            if remade:
                h.engine.invalidate()
            await h.settle()
        return rows

    monkeypatch.setattr("millpond.segments.engine.owned_events", read_then_follow)
    await job.run_once()
    # An identify: cat is evaluated again from the running state in every segment.
    await h.send(identify("cat-id", NOW - 30_000, user_id="cat"), source_id=web)
    await h.settle()
    assert _members(h, "s2") == {"bob", "cat"}  # bob-new and bob-mid
    assert _members(h, "s3") == {"bob", "cat"}  # cat-3 counted once: 3 orders
    await h.add_segment("s4", "repeat-again", REPEAT)
    assert _members(h, "s4") == {"bob", "cat"}


@run_async
async def test_the_owners_that_are_one_person_are_in_one_part(storage, monkeypatch):
    monkeypatch.setattr(removed, "PART", 2)
    h = Harness(storage, Clock(NOW))
    await h.send(identify("i1", NOW - DAY, user_id="dan", anonymous_id="anon-dan"))
    while await h.follower.catch_up_once():  # the profiles join the two ids
        pass
    owners = {"eve": True, "dan": True, "fay": True, "anon-dan": False, "gil": True}
    parts = removed.parts_of(storage, owners)
    assert [len(part) for part in parts] == [3, 2]  # a part closes at 2 owners or more
    assert {k: v for part in parts for k, v in part.items()} == owners
    assert any({"dan", "anon-dan"} <= set(part) for part in parts)


async def _ready(h: Harness, service: SegmentService) -> None:
    """Until no segment is building (the service builds them in tasks of its own)."""
    for _ in range(500):
        await service.wait_builds()
        if all(seg.state == "ready" for seg in h.storage.segments.list()):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("segments still building")


@run_async
async def test_a_stop_before_the_re_evaluation_is_caught_up_by_a_rebuild_at_start(storage):
    """Retention removed events and the process stopped before their owners were
    evaluated again: at its next start the service sees the log's cutoff ahead of what
    the memberships reflect, and builds every segment again. ann, whose only event went,
    is settled from her stored rows."""
    h, _job, web = await _shop(storage)
    await h.add_segment("s1", "buyers", BUYERS)
    await h.add_segment("s2", "repeat", REPEAT)
    await h.settle()
    step = await storage.log.expire(web, NOW - 30 * DAY)  # what the job did; then a stop
    assert step.owners == {"ann": True, "bob": True}

    service = SegmentService(storage, h.engine)  # the next start
    pending = asyncio.create_task(service.run_pending(interval=0.01))
    try:
        await asyncio.sleep(0.05)
        await _ready(h, service)
    finally:
        pending.cancel()
    assert (_members(h, "s1"), _members(h, "s2")) == ({"bob", "cat"}, {"cat"})
    exits = {(e["userId"], e["properties"]["audience_key"])
             for e in await h.audience_events() if e["event"] == "Audience Exited"}
    assert exits == {("ann", "buyers"), ("bob", "repeat")}
    assert await service.retention_missed() == {}  # the cutoff now counts as applied


@run_async
async def test_a_failed_re_evaluation_builds_every_segment_again(storage, monkeypatch, caplog):
    h, job, web = await _shop(storage)
    await h.add_segment("s1", "buyers", BUYERS)
    await h.add_segment("s2", "repeat", REPEAT)
    await h.settle()

    async def failing(owners):
        raise RuntimeError("engine down")

    monkeypatch.setattr(h.engine, "events_removed", failing)
    service = job.on_removed.__self__  # type: ignore[union-attr]
    assert await job.run_once() == {web: 2}
    assert "could not re-evaluate the 2 people whose events of source" in caplog.text
    await _ready(h, service)
    assert (_members(h, "s1"), _members(h, "s2")) == ({"bob", "cat"}, {"cat"})
    assert await service.retention_missed() == {}


@run_async
async def test_a_person_whose_every_event_went_is_in_no_segment_until_the_next(storage):
    """Nobody (no event left, no profile) is a member of nothing, even of a segment true
    before any data, as a build over the log would not know them; their next event of any
    name brings them back."""
    h, job, web = await _shop(storage)
    await h.add_segment("s1", "no-views", {"not": {"event": "Product Viewed"}})
    await h.settle()
    assert "ann" in _members(h, "s1")
    await job.run_once()  # ann-old, her only event, goes
    assert "ann" not in _members(h, "s1")
    await h.send(track("ann-new", NOW - 3_600_000, user_id="ann"), source_id=web)
    await h.settle()
    assert "ann" in _members(h, "s1")
    assert [e["event"] for e in await h.audience_events() if e["userId"] == "ann"] == [
        "Audience Entered", "Audience Exited", "Audience Entered"]
