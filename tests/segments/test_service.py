"""The segment service's builds (segments/service.py): a definition changed during a
build ends as a build of the new one, never two builds writing one segment at once; and a
build a stop interrupted is started again."""

import pytest

from millpond.segments import build
from millpond.segments.service import SegmentService
from millpond.storage import StorageConfig, open_storage
from millpond.storage.models import Segment
from millpond.timeutil import parse_iso_ms

from .harness import DAY, Clock, Harness, run_async, track

NOW = parse_iso_ms("2026-06-01T00:00:00Z")


@pytest.fixture(params=["memory", "sqlite"])
def storage(request, tmp_path):
    storage = open_storage(StorageConfig(backend=request.param, data_dir=str(tmp_path / "d")))
    yield storage
    storage.close()


async def _orders(h: Harness) -> None:
    await h.send(*[track(f"{who}{n}", NOW - (n + 1) * DAY, user_id=who)
                   for who, count in (("ann", 1), ("bob", 2), ("cat", 3)) for n in range(count)])


@run_async
async def test_a_definition_changed_during_a_build_ends_as_a_build_of_the_new_one(
        storage, monkeypatch):
    h = Harness(storage, Clock(NOW))
    await _orders(h)
    service = SegmentService(storage, h.engine)
    progress: list[tuple[str, int, int]] = []
    real_people, real_update = build.people_of, storage.segments.update
    changed = False

    async def people_then_change(engine, scan):
        nonlocal changed
        people = await real_people(engine, scan)
        if not changed:  # the first build has scanned: the definition changes under it
            changed = True
            await service.update("buyers", {"definition": {"event": "Order Completed",
                                                           "at_least": 3}})
        return people

    def recorded(segment):
        progress.append((segment.build_phase, segment.build_done, segment.build_total))
        return real_update(segment)

    held: list[bool] = []  # at each build's start: the follower keeps off the segment
    real_build = h.engine.build

    async def build_noting(segment_id):
        held.append(segment_id in h.engine.building)
        return await real_build(segment_id)

    monkeypatch.setattr(build, "people_of", people_then_change)
    monkeypatch.setattr(storage.segments, "update", recorded)
    monkeypatch.setattr(h.engine, "build", build_noting)
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
async def test_a_build_a_stop_interrupted_is_started_again(storage):
    h = Harness(storage, Clock(NOW))
    await _orders(h)
    h.engine.ensure_source()
    storage.segments.create(Segment("s1", "repeat", "Repeat", {"event": "Order Completed",
                                                               "at_least": 2},
                                    state="building", created_ms=NOW))
    storage.segments.create(Segment("s2", "done", "Done", {"event": "Nope"}, state="ready",
                                    created_ms=NOW))
    service = SegmentService(storage, h.engine)
    assert service.resume_builds() == ["s1"]
    await service.wait_builds()
    assert storage.segments.get("s1").state == "ready"
    assert sorted(m.user_id for m in storage.segments.members("s1").members) == ["bob", "cat"]
