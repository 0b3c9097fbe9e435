"""The event index's per-person contract, over every backend: a person's activity log
(an event is its userId's, else its anonymousId's), newest first in event time, each
event once, paged, current as of the call."""

from __future__ import annotations

import asyncio

from millpond.storage.models import StoredEvent, WindowCursor

from ..helpers import ev


def append(storage, events) -> list[int]:
    return storage.log.submit(events).result(10).seqs


def person(storage, ids, before=None, limit=50) -> list[StoredEvent]:
    return asyncio.run(storage.index.person_events(ids, before=before, limit=limit))


def count(storage, ids) -> int:
    return asyncio.run(storage.index.count_person_events(ids))


def keys(events) -> list[tuple[int, int]]:
    return [(e.ts_ms, e.seq) for e in events]


def test_a_persons_events_newest_first_in_event_time_each_once(storage):
    seqs = append(storage, [
        ev("m0", ts=500, anonymousId="a1"),                  # before they signed up
        ev("m1", ts=300, userId="u1", anonymousId="a1"),     # both ids: listed once
        ev("m2", ts=900, userId="u1"),
        ev("m3", ts=300, userId="u2"),                       # someone else
        ev("m4", ts=100, userId="u1"),                       # arrived late, older
        ev("m5", ts=300, anonymousId="u1"),                  # an anonymous id equal to it
        ev("m6", ts=700, userId="other", anonymousId="a2"),  # other's, not a2's
        ev("m7", ts=800, anonymousId="a2"),
    ])
    found = person(storage, ["u1", "a1"])
    want = sorted([(500, seqs[0]), (300, seqs[1]), (900, seqs[2]), (100, seqs[4]),
                   (300, seqs[5])], reverse=True)
    assert keys(found) == want
    assert [e.body for e in found] == [b for s in [k[1] for k in want]
                                       for b in [asyncio.run(storage.log.get(s)).body]]
    assert count(storage, ["u1", "a1"]) == 5
    assert keys(person(storage, ["a2"])) == [(800, seqs[7])]
    assert keys(person(storage, ["other", "a2"])) == [(800, seqs[7]), (700, seqs[6])]
    assert person(storage, ["nobody"]) == [] and count(storage, ["nobody"]) == 0
    assert person(storage, []) == [] and count(storage, []) == 0


def test_pages_continue_strictly_after_the_last_position(storage):
    events = [ev(f"m{i}", ts=1000 + (i * 37) % 101, **({"userId": "u"} if i % 2 else
                                                      {"anonymousId": "a"}))
              for i in range(230)]
    append(storage, events + [ev("x", ts=1050, userId="someone-else")])
    pages, before = [], None
    while True:
        page = person(storage, ["u", "a"], before=before, limit=50)
        if not page:
            break
        assert len(page) <= 50
        pages.append(page)
        before = WindowCursor(page[-1].ts_ms, page[-1].seq)
    listed = [k for page in pages for k in keys(page)]
    assert len(pages) == 5 and len(listed) == 230 == len(set(listed))
    assert listed == sorted(listed, reverse=True)
    assert count(storage, ["u", "a"]) == 230


def test_what_was_just_committed_is_listed(storage):
    for i in range(5):
        append(storage, [ev(f"m{i}", ts=i, userId="u1")])
        assert keys(person(storage, ["u1"], limit=1)) == [(i, storage.log.last_seq())]
        assert count(storage, ["u1"]) == i + 1


def test_removed_events_are_not_listed(backend, storage):
    seqs = append(storage, [ev(f"m{i}", ts=i, userId="u1") for i in range(10)])
    person(storage, ["u1"])  # indexed before they go
    backend.remove_events(storage, [seqs[9], seqs[8], seqs[3]])
    page = person(storage, ["u1"], limit=3)
    assert [e.seq for e in page] == [seqs[7], seqs[6], seqs[5]]
    assert [e.seq for e in person(storage, ["u1"])] == [seqs[i] for i in (7, 6, 5, 4, 2, 1, 0)]


def test_the_index_survives_a_reopen(durable_backend):
    storage = durable_backend.open()
    first = append(storage, [ev(f"m{i}", ts=i, userId="u1") for i in range(3)])
    assert len(person(storage, ["u1"])) == 3
    storage.close()
    storage = durable_backend.open()
    try:
        later = append(storage, [ev("n", ts=10, userId="u1")])
        assert [e.seq for e in person(storage, ["u1"])] == [later[0], *first[::-1]]
    finally:
        storage.close()
