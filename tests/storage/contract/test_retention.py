"""Retention's contract over every backend: ``expire`` removes exactly one source's events
that arrived before the cutoff, dedupe stays exact for them, and ``expired`` says how many
a window lost."""

from __future__ import annotations

import asyncio
import json

from millpond.storage.models import Window

from ..helpers import ev

HOUR = 3_600_000
DAY = 24 * HOUR


def _append(storage, events):
    return storage.log.submit(events).result(10)


def _keys(storage) -> list[tuple[str, str]]:
    rows = asyncio.run(storage.log.read(0, 100_000))
    return [(json.loads(e.body)["source_id"], json.loads(e.body)["messageId"]) for e in rows]


def _fill(storage) -> None:
    """Two sources, events arriving on days 1..4 (``received``), event times on day 0."""
    events = []
    for day in range(1, 5):
        for source in ("src_a", "src_b"):
            events += [ev(f"{source}-d{day}-{i}", source, ts=i * HOUR + 5, received=day * DAY)
                       for i in range(3)]
    _append(storage, events)


def test_expire_removes_exactly_the_sources_events_that_arrived_before(storage):
    _fill(storage)
    before = _keys(storage)
    result = asyncio.run(storage.log.expire("src_a", 3 * DAY))
    assert (result.removed, result.done) == (6, True)
    gone = {("src_a", f"src_a-d{d}-{i}") for d in (1, 2) for i in range(3)}
    assert _keys(storage) == [k for k in before if k not in gone]
    # the cutoff is exclusive, and again is a no-op
    assert asyncio.run(storage.log.expire("src_a", 3 * DAY)).removed == 0
    assert ("src_a", "src_a-d3-0") in _keys(storage)


def test_expire_works_in_bounded_steps(storage):
    _fill(storage)
    first = asyncio.run(storage.log.expire("src_b", 5 * DAY, limit=5))
    assert (first.removed, first.done) == (5, False)
    second = asyncio.run(storage.log.expire("src_b", 5 * DAY, limit=10))
    assert (second.removed, second.done) == (7, True)
    assert all(source == "src_a" for source, _ in _keys(storage))


def test_an_expired_message_id_stays_a_duplicate_and_says_so(storage):
    _fill(storage)
    asyncio.run(storage.log.expire("src_a", 2 * DAY))
    again = _append(storage, [ev("new"), ev("src_a-d1-0", "src_a"), ev("src_a-d2-0", "src_a")])
    assert again.seqs[0] is not None and again.seqs[1:] == [None, None]
    # d1 expired (not in the log); d2 is a duplicate of a stored event
    assert again.expired == [1]
    # another source's same messageId is its own event
    assert _append(storage, [ev("src_a-d1-0", "src_b")]).seqs[0] is not None


def test_expired_counts_what_a_window_lost(storage):
    _fill(storage)
    asyncio.run(storage.log.expire("src_a", 3 * DAY))
    asyncio.run(storage.log.expire("src_b", 2 * DAY))
    everything = asyncio.run(storage.log.expired(Window(0, 10 * DAY)))
    assert [(e.source_id, e.events, e.before_ms) for e in everything] == [
        ("src_a", 6, 3 * DAY), ("src_b", 3, 2 * DAY)]
    # hour 1 of event time only (events at 1 h + 5 ms), one source asked for
    one = asyncio.run(storage.log.expired(Window(HOUR, 2 * HOUR, source_ids=("src_a",))))
    assert [(e.source_id, e.events) for e in one] == [("src_a", 2)]
    assert asyncio.run(storage.log.expired(Window(5 * HOUR, 6 * HOUR))) == []


def test_expiry_is_durable(durable_backend):
    storage = durable_backend.open()
    try:
        _fill(storage)
        asyncio.run(storage.log.expire("src_a", 5 * DAY))
    finally:
        storage.close()
    again = durable_backend.open()
    try:
        assert all(source == "src_b" for source, _ in _keys(again))
        assert _append(again, [ev("src_a-d4-2", "src_a")]).expired == [0]
        assert asyncio.run(again.log.expired(Window(0, DAY)))[0].events == 12
    finally:
        again.close()


def test_a_scan_in_chunks_does_not_see_what_retention_removed_while_it_read(storage):
    _append(storage, [ev(f"{source}-{i}", source, received=DAY)
                      for i in range(400) for source in ("src_a", "src_b")])

    async def scan():
        log = storage.log
        first = await log.read(0, 100)
        removed = await log.expire("src_b", 2 * DAY)
        rest, after = [], first[-1].seq
        while rows := await log.read(after, 100):
            rest += rows
            after = rows[-1].seq
        return first, removed, rest

    first, removed, rest = asyncio.run(scan())
    assert len(first) == 100 and (removed.removed, removed.done) == (400, True)
    assert len(rest) == 350  # src_a's 400, less the 50 the first chunk had
    assert {json.loads(e.body)["source_id"] for e in rest} == {"src_a"}


def test_expire_says_whose_events_it_removed(storage):
    """Each removed event's userId (True), else its anonymousId (False); none for the
    events kept, nor for another source's."""
    _append(storage, [
        ev("a1", "src_a", received=DAY, userId="u1", anonymousId="anon-1"),
        ev("a2", "src_a", received=DAY, anonymousId="anon-2"),
        ev("a3", "src_a", received=DAY, kind="identify", userId="u3"),
        ev("a4", "src_a", received=DAY, anonymousId="u3"),  # also seen as a userId
        ev("kept", "src_a", received=3 * DAY, userId="u-kept"),
        ev("other", "src_b", received=DAY, userId="u-other"),
    ])
    first = asyncio.run(storage.log.expire("src_a", 2 * DAY, limit=2))
    second = asyncio.run(storage.log.expire("src_a", 2 * DAY, limit=10))
    assert (first.removed, second.removed) == (2, 2)
    assert {**first.owners, **second.owners} == {"u1": True, "anon-2": False, "u3": True}
    assert asyncio.run(storage.log.expire("src_a", 2 * DAY)).owners == {}


def test_the_owners_events_left_are_what_the_per_person_index_gives(storage):
    """What the segment engine reads again for each owner retention names: the index has
    dropped the removed events at once, and keeps the others (any source's)."""
    _append(storage, [
        ev("old-1", "src_a", received=DAY, userId="u1"),
        ev("old-2", "src_a", received=DAY, anonymousId="anon-1"),
        ev("new-1", "src_a", received=3 * DAY, userId="u1"),
        ev("other-1", "src_b", received=DAY, userId="u1"),
        ev("new-2", "src_a", received=3 * DAY, anonymousId="anon-1", userId="u2"),
    ])
    owners = asyncio.run(storage.log.expire("src_a", 2 * DAY)).owners
    assert owners == {"u1": True, "anon-1": False}
    left = asyncio.run(storage.index.person_events(sorted(owners), limit=100))
    assert sorted(json.loads(e.body)["messageId"] for e in left) == ["new-1", "other-1"]
