"""The segment service's builds (segments/service.py): a definition changed during a
build ends as a build of the new one, never two builds writing one segment at once; the
segments reading a changed one with in_segment are built again with it; and a build a
stop interrupted is started again."""

import asyncio

import pytest

from millpond.segments import build
from millpond.segments import service as service_module
from millpond.segments.service import SegmentService
from millpond.storage import StorageConfig, open_storage
from millpond.storage.models import Segment
from millpond.timeutil import parse_iso_ms

from .harness import DAY, Clock, Harness, identify, run_async, track

NOW = parse_iso_ms("2026-06-01T00:00:00Z")


@pytest.fixture(params=["memory", "sqlite"])
def storage(request, tmp_path):
    storage = open_storage(StorageConfig(backend=request.param, data_dir=str(tmp_path / "d")))
    yield storage
    storage.close()


async def _shop(storage, *, plans: bool = False) -> tuple[Harness, SegmentService]:
    """ann, bob and cat with 1, 2 and 3 orders (all on plan "pro" with ``plans``), and a
    service over them."""
    h = Harness(storage, Clock(NOW))
    await h.send(*[track(f"{who}{n}", NOW - (n + 1) * DAY, user_id=who)
                   for who, count in (("ann", 1), ("bob", 2), ("cat", 3)) for n in range(count)])
    if plans:
        await h.send(*[identify(f"i-{who}", NOW - 10 * DAY, user_id=who, plan="pro")
                       for who in ("ann", "bob", "cat")])
    return h, SegmentService(storage, h.engine)


def _changing(service: SegmentService, ref: str, definition: dict):
    """A stand-in for ``build.people_of`` that changes ``ref``'s definition the first time
    a build has scanned the log (under that build)."""
    real = build.people_of
    changed = False

    async def people_then_change(engine, scan):
        nonlocal changed
        people = await real(engine, scan)
        if not changed:
            changed = True
            await service.update(ref, {"definition": definition})
        return people

    return people_then_change


@run_async
async def test_a_definition_changed_during_a_build_ends_as_a_build_of_the_new_one(
        storage, monkeypatch):
    h, service = await _shop(storage)
    progress: list[tuple[str, int, int]] = []
    real_update = storage.segments.update

    def recorded(segment):
        progress.append((segment.build_phase, segment.build_done, segment.build_total))
        return real_update(segment)

    held: list[bool] = []  # at each build's start: the follower keeps off the segment
    real_build = h.engine.build_many

    async def build_noting(segment_ids):
        held.append(all(sid in h.engine.building for sid in segment_ids))
        return await real_build(segment_ids)

    monkeypatch.setattr(build, "people_of", _changing(service, "buyers", {
        "event": "Order Completed", "at_least": 3}))
    monkeypatch.setattr(storage.segments, "update", recorded)
    monkeypatch.setattr(h.engine, "build_many", build_noting)
    made = await service.create({"key": "buyers", "definition": {"event": "Order Completed"}})
    await service.wait_builds()
    segment = storage.segments.get(made["id"])
    assert segment.state == "ready" and segment.definition["at_least"] == 3
    assert [m.user_id for m in storage.segments.members(made["id"]).members] == ["cat"]
    # The first build wrote nothing once the definition changed: only cat ever entered.
    assert [(e["userId"], e["event"]) for e in await h.audience_events()] == [
        ("cat", "Audience Entered")]
    assert all(done <= total for phase, done, total in progress if phase == "evaluating")
    # The second build starts with the segment still held back by the first (stopped, it
    # left it to the second), so the follower never evaluated it meanwhile.
    assert held == [False, True] and made["id"] not in h.engine.building


@run_async
async def test_segments_saved_during_a_build_wait_for_it_then_are_built_together(
        storage, monkeypatch):
    """Saved one after the other, segments are one build at a time, not a build each
    at once (each scanning the whole log, each holding its own scan)."""
    h, service = await _shop(storage)
    builds: list[list[str]] = []
    running = most = 0
    real_build = h.engine.build_many

    async def noting(segment_ids):
        nonlocal running, most
        builds.append(sorted(segment_ids))
        running += 1
        most = max(most, running)
        try:
            return await real_build(segment_ids)
        finally:
            running -= 1

    gate = asyncio.Event()
    real_people = build.people_of

    async def held(engine, scan):
        await gate.wait()
        return await real_people(engine, scan)

    monkeypatch.setattr(h.engine, "build_many", noting)
    monkeypatch.setattr(build, "people_of", held)
    first = await service.create({"key": "any", "definition": {"event": "Order Completed"}})
    while not builds:
        await asyncio.sleep(0)
    others = [await service.create({"key": f"at-least-{n}", "definition": {
        "event": "Order Completed", "at_least": n}}) for n in (2, 3)]
    for made in others:
        assert service.view(storage.segments.get(made["id"]))["progress"]["phase"] == \
            "waiting"
    gate.set()
    await service.wait_builds()
    assert builds == [[first["id"]], sorted(o["id"] for o in others)] and most == 1
    assert [sorted(m.user_id for m in storage.segments.members(made["id"]).members)
            for made in (first, *others)] == [["ann", "bob", "cat"], ["bob", "cat"], ["cat"]]
    assert all(storage.segments.get(m["id"]).state == "ready" for m in (first, *others))


@run_async
async def test_a_build_a_stop_interrupted_is_started_again(storage):
    h, _ = await _shop(storage)
    h.engine.ensure_source()
    storage.segments.create(Segment("s1", "repeat", "Repeat", {"event": "Order Completed",
                                                               "at_least": 2},
                                    state="building", created_ms=NOW))
    storage.segments.create(Segment("s2", "done", "Done", {"event": "Nope"}, state="ready",
                                    created_ms=NOW))
    service = SegmentService(storage, h.engine)
    assert service.start_pending() == ["s1"]
    assert service.start_pending() == []  # already being built
    await service.wait_builds()
    assert storage.segments.get("s1").state == "ready"
    assert sorted(m.user_id for m in storage.segments.members("s1").members) == ["bob", "cat"]


@run_async
async def test_only_the_process_that_runs_builds_builds(storage):
    """In a cluster, a save in a process that does not follow the log leaves the segment
    ``building``; the one that does (the jobs lease's holder) builds it."""
    h, elsewhere = await _shop(storage)
    elsewhere.builds_here = False
    made = await elsewhere.create({"key": "buyers", "definition": {"event": "Order Completed"}})
    await elsewhere.wait_builds()
    assert elsewhere.start_pending() == []
    assert storage.segments.get(made["id"]).state == "building"
    assert storage.segments.count_members(made["id"]) == 0
    holder = SegmentService(storage, h.engine)
    assert holder.start_pending() == [made["id"]]
    await holder.wait_builds()
    assert storage.segments.get(made["id"]).state == "ready"
    assert storage.segments.count_members(made["id"]) == 3


@run_async
async def test_a_failed_build_is_tried_again_after_a_while_and_a_stop_cancels_builds(
        storage, monkeypatch):
    h, service = await _shop(storage)
    real = h.engine.build_many
    calls = 0

    async def failing_once(segment_ids):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("disk on fire")
        return await real(segment_ids)

    monkeypatch.setattr(h.engine, "build_many", failing_once)
    made = await service.create({"key": "buyers", "definition": {"event": "Order Completed"}})
    await service.wait_builds()
    assert storage.segments.get(made["id"]).state == "building"
    assert service.start_pending() == []  # not at once: it failed a moment ago
    monkeypatch.setattr(service_module, "RETRY_FAILED_SECONDS", 0.0)
    assert service.start_pending() == [made["id"]]
    await service.wait_builds()
    assert storage.segments.get(made["id"]).state == "ready" and calls == 2

    blocked = asyncio.Event()

    async def waiting(engine, scan):
        blocked.set()
        await asyncio.Event().wait()  # until cancelled

    monkeypatch.setattr(build, "people_of", waiting)
    await service.update("buyers", {"definition": {"event": "Order Completed",
                                                   "at_least": 2}})
    await blocked.wait()
    await service.stop_builds()
    assert not service._builds and storage.segments.get(made["id"]).state == "building"
    assert made["id"] not in h.engine.building


@run_async
async def test_the_segments_reading_a_changed_one_are_built_again_with_it(storage):
    h, service = await _shop(storage, plans=True)
    buyers = await service.create({"key": "buyers", "definition": {"event": "Order Completed"}})
    pro = await service.create({"key": "pro-buyers", "definition": {"all": [
        {"trait": "plan", "op": "eq", "value": "pro"}, {"in_segment": "buyers"}]}})
    top = await service.create({"key": "top", "definition": {"in_segment": "pro-buyers"}})
    other = await service.create({"key": "other", "definition": {"event": "Nope"}})
    await service.wait_builds()
    assert storage.segments.count_members(top["id"]) == 3
    await service.update("buyers", {"definition": {"event": "Order Completed",
                                                   "at_least": 2}})
    assert [storage.segments.get(s["id"]).state for s in (buyers, pro, top, other)] == [
        "building", "building", "building", "ready"]
    await service.wait_builds()
    for made in (buyers, pro, top):
        segment = storage.segments.get(made["id"])
        assert segment.state == "ready"
        assert sorted(m.user_id for m in storage.segments.members(made["id"]).members) == \
            ["bob", "cat"], segment.key
    left = [(e["userId"], e["event"], e["properties"]["audience_key"])
            for e in await h.audience_events() if e["event"] == "Audience Exited"]
    assert sorted(left) == [("ann", "Audience Exited", key)
                            for key in ("buyers", "pro-buyers", "top")]


@run_async
async def test_a_build_stops_when_a_segment_it_reads_changes(storage, monkeypatch):
    """``pro-buyers`` is being built when ``buyers``, which it reads, changes: that build
    stops writing, and the one the change started builds both, so ann (one order) never
    enters ``pro-buyers`` under the old ``buyers``."""
    h, service = await _shop(storage, plans=True)
    await service.create({"key": "buyers", "definition": {"event": "Order Completed"}})
    await service.wait_builds()
    monkeypatch.setattr(build, "people_of", _changing(service, "buyers", {
        "event": "Order Completed", "at_least": 2}))
    pro = await service.create({"key": "pro-buyers", "definition": {"all": [
        {"trait": "plan", "op": "eq", "value": "pro"}, {"in_segment": "buyers"}]}})
    await service.wait_builds()
    assert sorted(m.user_id for m in storage.segments.members(pro["id"]).members) == \
        ["bob", "cat"]
    said = [(e["userId"], e["event"]) for e in await h.audience_events()
            if e["properties"]["audience_key"] == "pro-buyers"]
    assert sorted(said) == [("bob", "Audience Entered"), ("cat", "Audience Entered")]
