"""A regulation's deletion and segments: nothing the engine writes names a deleted person
(not the scheduler's exit that comes due while the deletion runs, not a build running
meanwhile), and another user whose event went with the deleted person's anonymous id is
evaluated again without it. The real deletion job, through the server's wiring
(``LogFollowers``), on the memory and SQLite stores."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence

import msgspec
import pytest

from millpond.app.followers import LogFollowers
from millpond.delivery.transport import HttpTransport
from millpond.regulations.blocklist import Blocklist
from millpond.regulations.forward import Forwarder
from millpond.regulations.job import Retries
from millpond.regulations.service import RegulationService
from millpond.segments import build
from millpond.storage.models import RegulationType, Segment
from millpond.timeutil import parse_iso_ms

from .harness import DAY, Clock, Harness, identify, run_async, track

NOW = parse_iso_ms("2026-06-01T00:00:00Z")
DAN = {"dan", "a-dan"}


async def _shop(storage) -> Harness:
    """dan (identified with his device's anonymous id) ordered 29 days ago; xavier's only
    order was sent from dan's device (his userId, dan's anonymousId); cat ordered 10 days
    ago."""
    h = Harness(storage, Clock(NOW))
    await h.send(identify("dan-id", NOW - 40 * DAY, user_id="dan", anonymous_id="a-dan"),
                 track("dan-1", NOW - 29 * DAY, user_id="dan"),
                 track("xavier-1", NOW - 100 * DAY, user_id="xavier", anonymous_id="a-dan"),
                 track("cat-1", NOW - 10 * DAY, user_id="cat"))
    return h


def _members(h: Harness, segment_id: str) -> set[str]:
    return {m.user_id or m.anonymous_id or "" for m in
            h.storage.segments.members(segment_id).members}


def _service(h: Harness, steps: dict) -> RegulationService:
    return RegulationService(h.storage, Blocklist(), Forwarder(HttpTransport(timeout=1)),
                             retries=Retries(base_seconds=0.01),
                             followers=LogFollowers(h.follower, h.engine), steps=steps)


async def _naming(h: Harness, ids: set[str]) -> list[dict]:
    rows = await h.storage.log.read(0, 1_000_000)
    events = [msgspec.json.decode(r.body) for r in rows]
    return [e for e in events if {e.get("userId"), e.get("anonymousId")} & ids]


@run_async
async def test_nothing_names_the_deleted_person_and_others_lose_what_went_with_them(
        storage, caplog):
    caplog.set_level(logging.INFO, "millpond.regulations")
    h = await _shop(storage)
    await h.add_segment("s1", "buyers", {"event": "Order Completed"})
    await h.add_segment("s2", "recent", {"event": "Order Completed", "within": "30d"})
    await h.settle()
    assert (_members(h, "s1"), _members(h, "s2")) == ({"dan", "xavier", "cat"},
                                                       {"dan", "cat"})
    h.clock.now = NOW + 2 * DAY  # dan's order has left "recent"'s window: his exit is due
    loop = asyncio.get_running_loop()
    due: list[int] = []

    def scheduler_meanwhile(ids: Sequence[str]) -> int:
        # A step after the events went, before the rows go: the scheduler runs then.
        due.append(asyncio.run_coroutine_threadsafe(h.engine.run_due(), loop).result(10))
        return 0

    service = _service(h, {"import_files": scheduler_meanwhile})
    reg = await service.create(RegulationType.DELETE, ["dan"], [], "test")
    assert set(reg.ids) == DAN
    await service.wait_idle()
    assert service.get(reg.id).state == "finished" and due == [1]
    await h.settle()

    assert await _naming(h, DAN) == []  # no Audience Exited of dan's came after
    assert h.storage.segments.by_ids(sorted(DAN)) == []
    # xavier's only order went with dan's anonymous id: he left "buyers", announced.
    assert (_members(h, "s1"), _members(h, "s2")) == ({"cat"}, {"cat"})
    exits = [(e["userId"], e["properties"]["audience_key"]) for e in await h.audience_events()
             if e["event"] == "Audience Exited"]
    assert exits == [("xavier", "buyers")]
    assert "events of 1 other user(s) carry these ids" in caplog.text
    # A deletion is not a suppression: dan's later order makes him a member again, and
    # the running state counts xavier's orders from what is left.
    await h.send(track("dan-2", NOW + 2 * DAY - 60_000, user_id="dan"),
                 track("xavier-2", NOW + 2 * DAY - 60_000, user_id="xavier"))
    await h.settle()
    assert _members(h, "s2") == {"dan", "xavier", "cat"}
    back = [(e["event"], e["properties"]["audience_key"]) for e in await _naming(h, DAN)
            if e["event"].startswith("Audience")]
    assert sorted(back) == [("Audience Entered", "buyers"), ("Audience Entered", "recent")]
    await h.add_segment("s3", "repeat", {"event": "Order Completed", "at_least": 2})
    await h.settle()
    assert _members(h, "s3") == set()


@pytest.mark.parametrize("rebuild", [False, True])
@run_async
async def test_a_build_running_through_a_deletion_writes_nothing_of_the_person(
        storage, monkeypatch, rebuild):
    h = await _shop(storage)
    if rebuild:  # the build reads dan's rows, then the deletion removes them
        await h.add_segment("s1", "buyers", {"event": "Order Completed"})
    await h.settle()
    service = _service(h, {})
    real = build.people_of
    deleted: list[str] = []

    async def people_then_delete(engine, scan):
        people = await real(engine, scan)  # the scan has counted dan's order
        if not deleted:
            reg = await service.create(RegulationType.DELETE, ["dan"], [], "test")
            await service.wait_idle()
            deleted.append(service.get(reg.id).state)
        return people

    monkeypatch.setattr(build, "people_of", people_then_delete)
    if not rebuild:
        h.storage.segments.create(Segment("s1", "buyers", "Buyers",
                                          {"event": "Order Completed"}, created_ms=NOW))
    await h.engine.build("s1")
    assert deleted == ["finished"]
    await h.settle()
    assert await _naming(h, DAN) == []
    assert h.storage.segments.by_ids(sorted(DAN)) == []
    assert _members(h, "s1") == {"cat"}
    assert not h.engine.withheld  # released once the build ended
    await h.send(track("dan-2", NOW - 60_000, user_id="dan"))
    await h.settle()
    assert _members(h, "s1") == {"dan", "cat"}
    assert [e["event"] for e in await _naming(h, DAN) if e["event"].startswith("Audience")
            ] == ["Audience Entered"]


@run_async
async def test_unknown_owners_have_the_engine_read_the_log_again(storage, monkeypatch,
                                                                  caplog):
    h = await _shop(storage)
    await h.add_segment("s1", "buyers", {"event": "Order Completed"})
    await h.settle()

    def unreadable(ids):
        raise OSError("disk error")

    monkeypatch.setattr(h.storage.eraser, "event_owners", unreadable)
    epoch = h.engine.epoch
    service = _service(h, {})
    reg = await service.create(RegulationType.DELETE, ["dan"], [], "test")
    await service.wait_idle()
    assert service.get(reg.id).state == "finished"
    assert "could not read whose events go (OSError: disk error)" in caplog.text
    assert h.engine.epoch == epoch + 1  # the running state was remade from the log
    assert await _naming(h, DAN) == []
    assert {"cat"} <= _members(h, "s1") and not DAN & _members(h, "s1")


@pytest.mark.parametrize("stop_in", ["events", "import_files"])
@run_async
async def test_a_deletion_resumed_after_its_events_went_still_knows_whose_they_were(
        storage, monkeypatch, stop_in):
    h = await _shop(storage)
    await h.add_segment("s1", "buyers", {"event": "Order Completed"})
    await h.settle()
    entered, gate = threading.Event(), threading.Event()
    erase = storage.eraser.events

    def erased_then_stopped(ids: Sequence[str]) -> int:  # the server stops in this step
        if stop_in == "events":
            erase(ids)
        entered.set()
        gate.wait(10)
        raise OSError("stopped")

    if stop_in == "events":
        monkeypatch.setattr(storage.eraser, "events", erased_then_stopped)
    first = _service(h, {"import_files": erased_then_stopped})
    reg = await first.create(RegulationType.DELETE, ["dan"], [], "test")
    assert await asyncio.to_thread(entered.wait, 10)
    await first.stop()
    gate.set()
    saved = first.get(reg.id)
    assert saved.event_owners == {"dan": True, "xavier": True}  # read before they went
    # Started again: a new engine, whose running state is read from the log as it is.
    monkeypatch.setattr(storage.eraser, "events", erase)
    again = Harness(storage, h.clock)
    resumed = _service(again, {})
    await resumed.start()
    await resumed.wait_idle()
    await resumed.stop()
    done = resumed.get(reg.id)
    assert done.state == "finished" and done.event_owners is None
    await again.settle()
    assert await _naming(again, DAN) == []
    assert _members(again, "s1") == {"cat"}  # xavier was evaluated again
