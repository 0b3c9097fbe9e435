"""The event index's contract, over every backend: window order and resume, counts, query
filters, gaps, and scanning parts of a window in other processes."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor

from millpond.storage.models import EventQuery, StoredEvent, Window, WindowCursor

from ..helpers import ev

#: Arrival order differs from event time; equal times must stay in seq order.
TIMES = [500, 100, 300, 100, 900, 300, 100, 1000, 50, 300]


def append(storage, events) -> list[int]:
    return storage.log.submit(events).result(10).seqs


def scan(storage, window: Window, after: WindowCursor | None = None,
         chunk: int = 2000) -> list[list[StoredEvent]]:
    async def collect():
        return [c async for c in storage.index.scan(window, after=after, chunk=chunk)]

    return asyncio.run(collect())


def flat(chunks) -> list[tuple[int, int]]:
    return [(e.ts_ms, e.seq) for chunk in chunks for e in chunk]


def test_scan_is_in_event_time_order_with_seq_tiebreak(storage):
    seqs = append(storage, [ev(f"m{i}", ts=t) for i, t in enumerate(TIMES)])
    chunks = scan(storage, Window(100, 1000), chunk=2)
    assert all(0 < len(c) <= 2 for c in chunks)
    expected = sorted((t, s) for t, s in zip(TIMES, seqs, strict=True) if 100 <= t < 1000)
    assert flat(chunks) == expected
    # max_seq leaves out what arrived later (a replay's upper bound)
    limited = flat(scan(storage, Window(0, 2000, max_seq=seqs[4]), chunk=3))
    assert limited == sorted(zip(TIMES[:5], seqs[:5], strict=True))
    assert scan(storage, Window(2000, 3000)) == []


def test_scan_resumes_strictly_after_a_cursor(storage):
    seqs = append(storage, [ev(f"m{i}", ts=t) for i, t in enumerate(TIMES)])
    everything = flat(scan(storage, Window(0, 2000)))
    for i, (ts, seq) in enumerate(everything):
        assert flat(scan(storage, Window(0, 2000), WindowCursor(ts, seq), chunk=3)) \
            == everything[i + 1:]
    # a cursor before the window starts: the whole window
    assert flat(scan(storage, Window(200, 2000), WindowCursor(100, seqs[3]))) == \
        [p for p in everything if p[0] >= 200]
    # within one timestamp: only the later seqs of it
    [(t, first), (_, second), (_, third)] = [p for p in everything if p[0] == 300]
    assert flat(scan(storage, Window(300, 301), WindowCursor(300, first))) == [
        (300, second), (300, third)]


def test_scan_keeps_only_the_window_sources(storage):
    seqs = append(storage, [ev(f"m{i}", "s1" if i % 3 else "s2", ts=t)
                            for i, t in enumerate(TIMES)])
    only = flat(scan(storage, Window(0, 2000, source_ids=("s2",))))
    assert sorted(s for _, s in only) == [s for i, s in enumerate(seqs) if i % 3 == 0]
    assert scan(storage, Window(0, 2000, source_ids=())) == []


def test_a_scan_closed_early_stops(storage):
    append(storage, [ev(f"m{i}", ts=i) for i in range(50)])

    async def first_chunk():
        chunks = storage.index.scan(Window(0, 100), chunk=5)
        first = await anext(chunks)
        await chunks.aclose()
        return first

    assert [e.ts_ms for e in asyncio.run(first_chunk())] == [0, 1, 2, 3, 4]


def test_bodies_come_back_byte_for_byte(storage):
    events = []
    for i, t in enumerate([-7, 3, -100, 3]):
        e = ev(f"m{i}", ts=t)
        e.body = json.dumps({"messageId": f"m{i}", "note": "héllo \\n wörld" * i},
                            ensure_ascii=False).encode()
        events.append(e)
    append(storage, events)
    got = {e.seq: e.body for chunk in scan(storage, Window(-1000, 1000), chunk=3)
           for e in chunk}
    assert sorted(got.values()) == sorted(e.body for e in events)


def test_count_is_what_scan_yields(storage):
    seqs = append(storage, [ev(f"m{i}", "s1" if i % 2 else "s2", ts=t)
                            for i, t in enumerate(TIMES)])
    for window in (Window(0, 2000), Window(100, 1000), Window(0, 2000, max_seq=seqs[5]),
                   Window(0, 2000, source_ids=("s1",)), Window(0, 2000, source_ids=()),
                   Window(5000, 6000)):
        assert asyncio.run(storage.index.count(window)) == len(flat(scan(storage, window)))


def test_query_filters_and_cursor(storage):
    seqs = append(storage, [ev("a", "s1", ts=10, received=100, userId="u1", event="A"),
                            ev("b", "s2", ts=20, received=200, kind="page", userId="u2"),
                            ev("c", "s1", ts=30, received=300, userId="u2", event="B"),
                            ev("d", "s1", ts=40, received=400, userId="u1", event="A")])

    def mids(**kw) -> list[str]:
        found = asyncio.run(storage.index.query(EventQuery(**kw)))
        return [json.loads(e.body)["messageId"] for e in found]

    assert mids() == ["a", "b", "c", "d"]
    assert mids(source_ids=["s1"]) == ["a", "c", "d"]
    assert mids(types=["page"]) == ["b"]
    assert mids(event_name="A") == ["a", "d"]
    assert mids(user_id="u2") == ["b", "c"]
    assert mids(ts_from=20, ts_to=40) == ["b", "c"]
    assert mids(received_from=200, received_to=400) == ["b", "c"]
    assert mids(after_seq=seqs[1], limit=1) == ["c"]
    assert mids(descending=True, before_seq=seqs[2]) == ["b", "a"]
    assert mids(descending=True, limit=3) == ["d", "c", "b"]


def test_gaps_are_tolerated(backend, storage):
    seqs = append(storage, [ev(f"m{i}", ts=t) for i, t in enumerate(TIMES)])
    backend.remove_events(storage, [seqs[1], seqs[4], seqs[7]])
    kept = [(t, s) for i, (t, s) in enumerate(zip(TIMES, seqs, strict=True))
            if i not in (1, 4, 7)]
    assert flat(scan(storage, Window(0, 2000), chunk=2)) == sorted(kept)
    assert asyncio.run(storage.index.count(Window(0, 2000))) == len(kept)
    found = asyncio.run(storage.index.query(EventQuery(after_seq=seqs[0], limit=2)))
    assert [e.seq for e in found] == [seqs[2], seqs[3]]


def _scan_part(scanner, part, window) -> list[int]:
    return [seq for chunk in scanner.scan(part, window, 7) for seq, _ in chunk]


def test_parts_cover_the_window_exactly_once_from_other_processes(parts_backend):
    storage = parts_backend.open()
    try:
        # Event times jump around arrival order; two sources. A wide window (most rows of
        # the range) and a narrow one.
        times = [(i * 7919) % 1000 for i in range(400)]
        append(storage, [ev(f"m{i}", "src_a" if i % 3 else "src_b", ts=t)
                         for i, t in enumerate(times)])
        scanner = pickle.loads(pickle.dumps(storage.index.part_scanner()))
        windows = [Window(lo, hi, max_seq, sources) for lo, hi in ((0, 10_000), (300, 400))
                   for max_seq, sources in ((None, None), (300, None), (None, ("src_b",)))]
        # spawn, as the server's own workers (millpond.workers: forkserver): a fork of
        # this process copies the store's threads' locks, and a child once hung for good
        # in sqlite3.connect on a mutex another of the store's threads held at the fork
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
            for window in windows:
                parts = scanner.parts(window, max_parts=4, min_events=10)
                assert 1 < len(parts) <= 4
                got = [s for seqs in pool.map(_scan_part, [scanner] * len(parts), parts,
                                              [window] * len(parts)) for s in seqs]
                expected = [s for _, s in flat(scan(storage, window))]
                assert sorted(got) == sorted(expected) and len(got) == len(set(got)) > 0
            small = scanner.parts(Window(0, 10_000), max_parts=8, min_events=1000)
            assert len(small) == 1
    finally:
        storage.close()
