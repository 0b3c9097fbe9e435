"""The engine on a real (memory and SQLite) store: build, follow, merge, schedule."""

import msgspec
import pytest

from millpond.storage import StorageConfig, open_storage
from millpond.timeutil import parse_iso_ms

from .harness import DAY, Clock, Harness, identify, run_async, track

NOW = parse_iso_ms("2026-06-01T00:00:00Z")


@pytest.fixture(params=["memory", "sqlite"])
def harness(request, tmp_path):
    storage = open_storage(StorageConfig(backend=request.param, data_dir=str(tmp_path / "d")))
    yield Harness(storage, Clock(NOW))
    storage.close()


@run_async
async def test_build_then_follow_emits_audience_events_in_event_time(harness):
    h = harness
    old = NOW - 730 * DAY
    await h.send(track("o1", old, user_id="ann"), track("o2", NOW - DAY, user_id="bob"),
                 track("v1", NOW - DAY, "Viewed", user_id="cat"))
    seg = await h.add_segment("s1", "buyers", {"event": "Order Completed"})
    assert seg.state == "ready" and seg.build_total == 3 and seg.build_done == 3  # people
    entered = {e["userId"]: e for e in await h.audience_events()}
    assert set(entered) == {"ann", "bob"}
    assert entered["ann"]["timestamp"] == "2024-06-01T00:00:00.000Z"
    assert entered["ann"]["event"] == "Audience Entered"
    assert entered["ann"]["properties"]["audience_key"] == "buyers"
    # A new purchase by cat, followed live: cat enters at its event time.
    await h.send(track("o3", NOW - 60_000, user_id="cat"))
    await h.settle()
    events = await h.audience_events()
    assert [(e["userId"], e["timestamp"]) for e in events][-1] == (
        "cat", "2026-05-31T23:59:00.000Z")
    assert h.storage.segments.count_members("s1") == 3
    # Re-running the build appends nothing new (deterministic messageIds, same state).
    await h.engine.build("s1")
    assert len(await h.audience_events()) == 3


@run_async
async def test_identify_merges_an_anonymous_history(harness):
    h = harness
    await h.add_segment("s1", "two-orders", {"event": "Order Completed", "at_least": 2})
    await h.send(track("o1", NOW - 3 * DAY, anonymous_id="anon-1"),
                 track("o2", NOW - 2 * DAY, user_id="dan"))
    await h.settle()
    assert h.storage.segments.count_members("s1") == 0
    await h.send(identify("i1", NOW - DAY, user_id="dan", anonymous_id="anon-1"))
    await h.settle()
    page = h.storage.segments.members("s1")
    assert len(page.members) == 1 and page.members[0].user_id == "dan"
    assert page.members[0].since_ms == NOW - 2 * DAY


@run_async
async def test_time_passing_exits_at_the_right_moment(harness):
    h = harness
    await h.add_segment("s1", "recent", {"event": "Order Completed", "at_least": 2,
                                         "within": "30d"})
    await h.send(track("o1", NOW - 29 * DAY - 3_600_000, user_id="eve"),
                 track("o2", NOW - 29 * DAY, user_id="eve"))
    await h.settle()
    row = h.storage.segments.member("s1", h.storage.segments.members("s1").members[0].person_id)
    exit_at = NOW - 29 * DAY - 3_600_000 + 30 * DAY
    assert row.member and row.next_change_ms == exit_at
    h.clock.now = exit_at - 1
    assert await h.engine.run_due() == 0
    h.clock.now = exit_at
    assert await h.engine.run_due() == 1
    assert h.storage.segments.count_members("s1") == 0
    last = (await h.audience_events())[-1]
    assert last["event"] == "Audience Exited"
    assert last["timestamp"] == "2026-06-01T23:00:00.000Z"  # 30 d after the older one
    assert h.storage.segments.next_due() is None


@run_async
async def test_live_follows_only_affected_segments_and_keeps_since_exact(harness):
    """The follower evaluates a person only in the segments a tick's events may change
    (segments/plan.py): an event of a name no condition counts, earlier than anything
    the person did, still moves the ``since`` of a state held since their first event;
    a counted one still changes membership."""
    h = harness
    await h.add_segment("s1", "never-viewed", {"not": {"event": "Viewed"}})
    await h.add_segment("s2", "buyers", {"event": "Order Completed"})
    await h.send(track("o1", NOW - DAY, "Signed Up", user_id="fay"))
    await h.settle()
    person = h.storage.segments.members("s1").members[0].person_id
    assert h.storage.segments.member("s1", person).since_ms == NOW - DAY
    assert h.storage.segments.member("s2", person) is None
    # Backfilled, of a name neither segment counts: fay was seen earlier.
    await h.send(track("o2", NOW - 5 * DAY, "Signed Up", user_id="fay"))
    await h.settle()
    assert h.storage.segments.member("s1", person).since_ms == NOW - 5 * DAY
    assert h.storage.segments.member("s2", person) is None
    # Later, of a name neither counts: nothing changes.
    await h.send(track("o3", NOW - 60_000, "Signed Up", user_id="fay"))
    await h.settle()
    assert h.storage.segments.member("s1", person).since_ms == NOW - 5 * DAY
    # Counted names change membership.
    await h.send(track("o4", NOW - 2 * DAY, "Viewed", user_id="fay"),
                 track("o5", NOW - 3 * DAY, "Order Completed", user_id="fay"))
    await h.settle()
    assert not h.storage.segments.member("s1", person).member
    assert h.storage.segments.member("s1", person).since_ms == NOW - 2 * DAY
    assert h.storage.segments.member("s2", person).since_ms == NOW - 3 * DAY


@run_async
async def test_a_trait_path_reads_into_an_object_trait(harness):
    """``address.city`` is the city of the ``address`` trait, as of the update that set
    the object: built over what is there, and followed when a later identify changes
    the object (the segment reads ``address``, though no trait is named
    ``address.city``)."""
    h = harness
    await h.send(identify("i0", NOW - 3 * DAY, user_id="hal", address={"city": "Oslo"}))
    await h.add_segment("s1", "oslo", {"trait": "address.city", "op": "eq", "value": "Oslo"})
    await h.send(identify("i1", NOW - 2 * DAY, user_id="gus",
                          address={"city": "Oslo", "zip": "0150"}))
    await h.settle()
    rows = {m.user_id: m for m in h.storage.segments.members("s1").members}
    assert {u: m.since_ms for u, m in rows.items()} == {"hal": NOW - 3 * DAY,
                                                        "gus": NOW - 2 * DAY}
    await h.send(identify("i2", NOW - DAY, user_id="gus", address={"city": "Bergen"}))
    await h.settle()
    assert [m.user_id for m in h.storage.segments.members("s1").members] == ["hal"]
    last = (await h.audience_events())[-1]
    assert (last["event"], last["userId"], last["timestamp"]) == (
        "Audience Exited", "gus", "2026-05-31T00:00:00.000Z")


@run_async
async def test_a_cleared_trait_exits_at_the_update_that_cleared_it(harness):
    """``plan: null`` clears the trait at its update's time: someone with a plan leaves a
    "has a plan" segment then, not at their first data (an Exited dated years back
    would be skipped by a destination's trigger window)."""
    h = harness
    await h.add_segment("s1", "planned", {"trait": "plan", "op": "exists"})
    await h.send(identify("i1", NOW - 400 * DAY, user_id="ivy", plan="pro"))
    await h.settle()
    await h.send(identify("i2", NOW - DAY, user_id="ivy", plan=None))
    await h.settle()
    assert h.storage.segments.count_members("s1") == 0
    said = [(e["event"], e["timestamp"]) for e in await h.audience_events()]
    assert said == [("Audience Entered", "2025-04-27T00:00:00.000Z"),
                    ("Audience Exited", "2026-05-31T00:00:00.000Z")]


@run_async
async def test_without_segments_the_follower_moves_past_events_unread(harness):
    """No segment to keep: the follower (on the collector's loop) reads nothing, and a
    segment made afterwards is still built over every event and then followed."""
    h = harness
    reads = []
    read = h.storage.log.read

    def counted(*args, **kwargs):
        reads.append(args)
        return read(*args, **kwargs)

    h.storage.log.read = counted
    await h.send(track("o1", NOW - DAY, user_id="ann"), track("o2", NOW - DAY, user_id="bob"))
    await h.settle()
    assert reads == []
    assert h.engine.position() == h.storage.log.last_seq()
    h.storage.log.read = read
    await h.add_segment("s1", "buyers", {"event": "Order Completed"})
    await h.send(track("o3", NOW, user_id="cat"))
    await h.settle()
    assert {e["userId"] for e in await h.audience_events()} == {"ann", "bob", "cat"}


@run_async
async def test_a_late_event_ending_a_state_is_announced_no_earlier_than_that_state(harness):
    """ann entered "never checked out" with her page view yesterday; a Checkout Started
    of last year, imported today, shows she never was in it. Her exit is stamped at her
    entry, not last year: a destination must not read an exit older than the entry it
    closes, and one with a trigger window would skip it after sending the entry."""
    h = harness
    await h.add_segment("s1", "never-checked-out", {"not": {"event": "Checkout Started"}})
    await h.send(track("v1", NOW - DAY, "Viewed", user_id="ann"))
    await h.settle()
    await h.send(track("c1", NOW - 400 * DAY, "Checkout Started", user_id="ann"))
    await h.settle()
    assert h.storage.segments.count_members("s1") == 0
    said = [(e["event"], e["timestamp"]) for e in await h.audience_events()]
    assert said == [("Audience Entered", "2026-05-31T00:00:00.000Z"),
                    ("Audience Exited", "2026-05-31T00:00:00.000Z")]
    # The membership history keeps when the state really changed, in event time.
    history = h.storage.segments.history(h.storage.segments.rows("s1")[0].person_id, "s1")
    assert [(c.member, c.at_ms) for c in history] == [(True, NOW - DAY),
                                                      (False, NOW - 400 * DAY)]


@run_async
async def test_a_new_definition_announces_an_exit_no_earlier_than_the_entry(harness):
    """bob, seen first a year ago, entered "buyers" with yesterday's order. The segment is
    redefined to people who signed up, which he never did: his exit is stamped at his
    entry, not at his first data a year ago."""
    h = harness
    await h.send(track("v1", NOW - 365 * DAY, "Viewed", user_id="bob"),
                 track("o1", NOW - DAY, user_id="bob"))
    await h.settle()
    before = await h.add_segment("s1", "buyers", {"event": "Order Completed"})
    h.storage.segments.update(msgspec.structs.replace(before,
                                                      definition={"event": "Signed Up"}))
    await h.engine.build("s1")
    said = [(e["event"], e["timestamp"]) for e in await h.audience_events()]
    assert said == [("Audience Entered", "2026-05-31T00:00:00.000Z"),
                    ("Audience Exited", "2026-05-31T00:00:00.000Z")]
