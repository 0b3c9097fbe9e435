"""The follower's state saved at a stop and taken up at the next start
(segments/saved_state.py): taken up only when it is exactly the state a scan of the log
would make, and then no scan of the log happens; otherwise the log is scanned."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest

from millpond.segments.engine import SegmentEngine
from millpond.segments.live import LiveState
from millpond.segments.saved_state import FILE
from millpond.segments.scan import LogScan
from millpond.timeutil import parse_iso_ms

from .harness import DAY, Clock, Harness, run_async, track

NOW = parse_iso_ms("2026-06-01T00:00:00Z")


class Scans:
    """Counts the scans of the whole log (``LogScan.read_log``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = LogScan.read_log

        async def counted(scan, *args, **kwargs):
            self.count += 1
            return await real(scan, *args, **kwargs)

        monkeypatch.setattr(LogScan, "read_log", counted)


async def _stopped_with_a_saved_state(storage, tmp_path) -> Harness:
    """Two segments followed live, then a clean stop that saves the state."""
    h = Harness(storage, Clock(NOW))
    h.engine.saved_state = tmp_path / FILE
    await h.add_segment("s1", "repeat", {"event": "Order Completed", "at_least": 2,
                                         "within": "30d"})
    await h.add_segment("s2", "viewers", {"event": "Viewed"})
    # Built after the others, so joined to their state (adopt): a second slot for the
    # condition it reads through in_segment, and its own copy of that condition, whose
    # slot a new scan has apart (two lists, not one fed twice).
    await h.add_segment("s3", "repeat-twice", {"all": [
        {"in_segment": "repeat"},
        {"event": "Order Completed", "at_least": 2, "within": "30d"}]})
    await h.send(track("o1", NOW - 2 * DAY, user_id="ann"),
                 track("o2", NOW - 40 * DAY, user_id="bob"),
                 track("v1", NOW - DAY, "Viewed", user_id="bob"),
                 track("c1", NOW - 9 * DAY, user_id="cat"),
                 track("c2", NOW - 8 * DAY, user_id="cat"))
    await h.settle()
    h.engine.save_state()
    assert (tmp_path / FILE).exists()
    return h


def _restarted(h: Harness, tmp_path) -> SegmentEngine:
    """A new process's engine over the same store."""
    h.engine = SegmentEngine(h.storage, clock=h.clock, profiles_upto=h._profiles_upto,
                             saved_state=tmp_path / FILE)
    return h.engine


def _state(engine: SegmentEngine) -> dict:
    live = engine._live
    assert live is not None
    return _by_slot(live.scan)


def _by_slot(scan: LogScan) -> dict:
    """Per id, the first event time and each slot's times under what the slot holds
    (slots may come in another order, and twice: a state joined from a build's scan)."""
    keys = scan.slot_keys()
    return {any_id: (slots[0], dict(zip(keys, map(repr, slots[1:]), strict=True)))
            for any_id, slots in scan.dump()[0].items()}


@run_async
async def test_a_state_saved_at_a_stop_is_taken_up_without_scanning_the_log(
        storage, tmp_path, monkeypatch, caplog):
    h = await _stopped_with_a_saved_state(storage, tmp_path)
    scanned = _state(h.engine)
    engine = _restarted(h, tmp_path)
    scans = Scans(monkeypatch)
    with caplog.at_level(logging.INFO, "millpond.segments"):
        await engine.take_saved()
        await engine.prepare()
    assert not (tmp_path / FILE).exists()  # good for one start only
    assert scans.count == 0
    assert "took up the state saved at the last stop" in caplog.text
    assert _state(engine) == scanned  # what the scan had made
    # It counts what came before: ann's second purchase (29 days after bob's first, who
    # is out of the window) makes her enter, live.
    await h.send(track("o3", NOW - DAY, user_id="ann"), track("o4", NOW, user_id="bob"),
                 track("c3", NOW - 7 * DAY, user_id="cat"))
    await h.settle()
    assert scans.count == 0
    assert sorted(m.user_id for m in storage.segments.members("s1").members) == ["ann",
                                                                                   "cat"]
    # And it is the state a scan of the log makes now.
    fresh = await LiveState.rebuild(storage, engine._live.key, storage.segments.list(),
                                    engine._live.definitions, storage.log.last_seq())
    assert _state(engine) == _by_slot(fresh.scan)


@run_async
async def test_a_saved_state_is_not_taken_up_once_the_log_or_the_segments_changed(
        storage, tmp_path, monkeypatch, caplog):
    """A changed definition, a removal of events since the start, the follower's
    checkpoint elsewhere: the log is scanned, and the file is gone either way."""
    h = await _stopped_with_a_saved_state(storage, tmp_path)

    async def started(change) -> int:
        engine = _restarted(h, tmp_path)
        scans = Scans(monkeypatch)
        caplog.clear()
        await change(engine)
        with caplog.at_level(logging.INFO, "millpond.segments"):
            await engine.take_saved()
            await engine.prepare()
        assert not (tmp_path / FILE).exists()
        h.engine.save_state()  # for the next case
        return scans.count

    async def nothing(engine: SegmentEngine) -> None:
        pass

    async def redefined(engine: SegmentEngine) -> None:
        segment = storage.segments.get("s2")
        storage.segments.update(type(segment)(**{**{f: getattr(segment, f) for f in
                                                   segment.__struct_fields__},
                                                 "definition": {"event": "Clicked"}}))

    async def removed(engine: SegmentEngine) -> None:
        await engine.events_removed({"bob": True})

    async def moved(engine: SegmentEngine) -> None:
        await h.send(track("x1", NOW, "Other", user_id="cat"))
        storage.segments.apply([], checkpoint=storage.log.last_seq())

    assert await started(nothing) == 0
    assert await started(redefined) == 1
    assert "(the segments or their definitions changed); scanning the log" in caplog.text
    assert await started(removed) == 1
    assert await started(moved) == 1
    assert re.search(r"\(it was saved at log seq \d+, the follower is at \d+\)", caplog.text)


@run_async
async def test_an_unreadable_saved_state_is_set_aside_and_the_log_scanned(
        storage, tmp_path, monkeypatch, caplog):
    h = await _stopped_with_a_saved_state(storage, tmp_path)
    (tmp_path / FILE).write_bytes(b"\x93not a saved state")
    engine = _restarted(h, tmp_path)
    scans = Scans(monkeypatch)
    with caplog.at_level(logging.WARNING, "millpond.segments"):
        await engine.take_saved()
        await engine.prepare()
    assert "is not one this version reads" in caplog.text
    assert scans.count == 1 and not (tmp_path / FILE).exists()


@run_async
async def test_catching_up_with_nothing_new_does_not_wait_for_the_state_being_made(storage):
    """A reader asking for its own writes (``GET /api/people``) right after a start waits
    for the follower only when there is something new to take in, not for the state the
    follower is making meanwhile (under the engine's lock)."""
    h = Harness(storage, Clock(NOW))
    await h.add_segment("s1", "buyers", {"event": "Order Completed"})
    await h.send(track("o1", NOW, user_id="ann"))
    await h.settle()
    async with h.engine.lock:  # as prepare() holds it while it scans the log
        assert await asyncio.wait_for(h.engine.catch_up_once(), 1) == 0
