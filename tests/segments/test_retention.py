"""Retention and segments: when the retention job removes events, the people who owned
them are evaluated again without them (``SegmentEngine.events_removed``), in the
follower's segments and in a build running meanwhile, and the follower's running state
stops counting them, so later live events are counted against what is left."""

from millpond.retention.expiry import RetentionJob
from millpond.segments import build
from millpond.sources.service import SourceService
from millpond.timeutil import parse_iso_ms

from .harness import DAY, Clock, Harness, run_async, track

NOW = parse_iso_ms("2026-06-01T00:00:00Z")
BUYERS = {"event": "Order Completed"}
REPEAT = {"event": "Order Completed", "at_least": 2}


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
                       on_removed=h.engine.events_removed)
    return h, job, web


def _members(h: Harness, segment_id: str) -> set[str]:
    return {m.user_id for m in h.storage.segments.members(segment_id).members
            if m.user_id is not None}


@run_async
async def test_removed_events_no_longer_count_live_or_in_the_stored_memberships(storage):
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
    removed: list[dict[str, int]] = []

    async def people_then_expire(engine, scan):
        people = await real(engine, scan)
        if not removed:  # the scan has counted ann-old and bob-old
            removed.append(await job.run_once())
        return people

    monkeypatch.setattr(build, "people_of", people_then_expire)
    three = {"event": "Order Completed", "at_least": 3}
    await h.add_segment("s1", "buyers", BUYERS)
    await h.add_segment("s2", "three", three)
    assert removed == [{web: 2}]
    assert _members(h, "s1") == {"bob", "cat"}  # ann's only order is gone
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

    async def failing(owners):
        raise RuntimeError("engine down")

    job.on_removed = failing
    assert await job.run_once() == {web: 2}
    assert "could not re-evaluate the segments of 2 people whose events of source web" \
        in caplog.text
