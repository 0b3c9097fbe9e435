"""Unit tests of the embedded log: dedupe, seq order, reopen, event-time scans, back-pressure."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time

import pytest

from millpond.errors import Overloaded
from millpond.log import sqlite_log
from millpond.log.base import EventQuery, NewEvent, NewRejection
from millpond.log.sqlite_log import SQLiteEventLog


def ev(message_id: str, source: str = "src_a", ts: int = 1_000, kind: str = "track",
       **body) -> NewEvent:
    payload = {"type": kind, "messageId": message_id, "source_id": source, **body}
    return NewEvent(source, kind, message_id, body.get("event"), body.get("userId"),
                    body.get("anonymousId"), ts,
                    int(time.time() * 1000), json.dumps(payload).encode())


@pytest.fixture
def log(tmp_path):
    opened = SQLiteEventLog(tmp_path / "log.db")
    yield opened
    opened.close()


def stored_ids(log: SQLiteEventLog) -> list[tuple[str, str]]:
    rows = log.read_after(0, 10_000)
    return [(json.loads(body)["source_id"], json.loads(body)["messageId"]) for _, body in rows]


class Blocker:
    """Holds SQLite's write lock from another connection, so the writer thread waits."""

    def __init__(self, path):
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


# -- dedupe ----------------------------------------------------------------------------
def test_retry_of_a_stored_message_is_not_stored_again(log):
    first = log.append_sync([ev("m1"), ev("m2")])
    assert first.seqs == [1, 2]
    retry = log.append_sync([ev("m2"), ev("m1"), ev("m3")])
    assert retry.seqs == [None, None, 3]
    assert (retry.stored, retry.duplicates) == (1, 2)
    assert stored_ids(log) == [("src_a", "m1"), ("src_a", "m2"), ("src_a", "m3")]


def test_same_message_id_from_two_sources_is_two_events(log):
    assert log.append_sync([ev("m1", "src_a"), ev("m1", "src_b")]).seqs == [1, 2]
    assert log.append_sync([ev("m1", "src_b")]).seqs == [None]
    assert stored_ids(log) == [("src_a", "m1"), ("src_b", "m1")]


def test_duplicates_inside_one_append(log):
    result = log.append_sync([ev("m1"), ev("m1"), ev("m2"), ev("m1")])
    assert result.seqs == [1, None, 2, None]


def test_duplicates_across_appends_of_one_group_commit(log, tmp_path):
    """Two requests carrying the same message, committed in one transaction: stored once."""
    blocker = Blocker(tmp_path / "log.db")
    results: dict[str, object] = {}

    def append(name: str, events: list[NewEvent]) -> None:
        results[name] = log.append_sync(events)

    # The writer takes the first submission and waits for the lock; the next two queue
    # up behind it and are committed together in the following group.
    threads = [threading.Thread(target=append, args=("first", [ev("m0")]))]
    threads[0].start()
    wait_until(lambda: log._pending == 1 and not log._queue)
    for name in ("a", "b"):
        threads.append(threading.Thread(target=append, args=(name, [ev("same"), ev(name)])))
        threads[-1].start()
    wait_until(lambda: len(log._queue) == 2)
    blocker.release()
    for thread in threads:
        thread.join(10)
    assert results["first"].seqs == [1]
    assert {tuple(results["a"].seqs), tuple(results["b"].seqs)} == {(2, 3), (None, 4)}
    assert sorted(mid for _, mid in stored_ids(log)) == ["a", "b", "m0", "same"]


def test_hash_collision_stores_both_and_still_dedupes_retries(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_log, "dedupe_hash", lambda source_id, message_id: 42)
    log = SQLiteEventLog(tmp_path / "log.db")
    try:
        assert log.append_sync([ev("x")]).seqs == [1]
        assert log.append_sync([ev("y")]).seqs == [2]  # same hash, different message
        assert log.append_sync([ev("x"), ev("y")]).seqs == [None, None]
        # Collisions inside one append: new ones stored, repeats dropped.
        assert log.append_sync([ev("z"), ev("w"), ev("z"), ev("x"), ev("w")]).seqs == [
            3, 4, None, None, None]
        assert log.append_sync([ev("x", "src_b")]).seqs == [5]  # other source, same hash
    finally:
        log.close()
    reopened = SQLiteEventLog(tmp_path / "log.db")  # the overflow keys are durable too
    try:
        assert reopened.append_sync([ev(m) for m in "xyzw"]).seqs == [None] * 4
        assert reopened.append_sync([ev("v")]).seqs == [6]
        assert sorted(m for _, m in stored_ids(reopened)) == ["v", "w", "x", "x", "y", "z"]
    finally:
        reopened.close()


# -- seq ---------------------------------------------------------------------------------
def test_seq_is_monotonic_and_gapless_under_concurrent_appends(log):
    seqs: list[int] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(40):
            result = log.append_sync([ev(f"t{n}-{i}-{k}") for k in range(3)])
            assert result.seqs == sorted(result.seqs)
            with lock:
                seqs.extend(result.seqs)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(seqs) == list(range(1, 6 * 40 * 3 + 1))
    assert log.last_seq() == 720
    rows = log.read_after(0, 10_000)
    assert [s for s, _ in rows] == list(range(1, 721))
    assert [s for s, _ in log.read_after(700, 5)] == [701, 702, 703, 704, 705]


def test_reopen_keeps_last_seq_and_dedupe(tmp_path):
    log = SQLiteEventLog(tmp_path / "log.db")
    log.append_sync([ev(f"m{i}") for i in range(5)])
    log.close()
    log = SQLiteEventLog(tmp_path / "log.db")
    try:
        assert log.last_seq() == 5
        assert log.append_sync([ev("m4"), ev("m5")]).seqs == [None, 6]
        assert log.last_seq() == 6
    finally:
        log.close()


def test_stored_body_gets_its_seq(log):
    log.append_sync([ev("m1", userId="u1", event="Clicked")])
    [row] = log.query(EventQuery())
    assert json.loads(row) == {"seq": 1, "type": "track", "messageId": "m1",
                               "source_id": "src_a", "userId": "u1", "event": "Clicked"}


# -- reading -----------------------------------------------------------------------------
def test_scan_window_is_in_event_time_order_with_seq_tiebreak(log):
    # Arrival order differs from event time; equal times must stay in seq order even
    # where a chunk boundary falls between them.
    times = [500, 100, 300, 100, 900, 300, 100, 1000, 50, 300]
    log.append_sync([ev(f"m{i}", ts=t) for i, t in enumerate(times)])
    chunks = list(log.scan_window(100, 1000, None, batch=2))
    assert all(len(c) <= 2 for c in chunks)
    rows = [(ts, seq) for chunk in chunks for ts, seq, _ in chunk]
    expected = sorted((t, i + 1) for i, t in enumerate(times) if 100 <= t < 1000)
    assert rows == expected
    # max_seq leaves out what arrived later (a replay's upper bound).
    limited = [(ts, seq) for c in log.scan_window(0, 2000, 5, batch=3) for ts, seq, _ in c]
    assert limited == sorted((t, i + 1) for i, t in enumerate(times[:5]))
    assert list(log.scan_window(2000, 3000, None)) == []


@pytest.mark.parametrize("window", [(0, 10_000), (300, 400)], ids=["dense", "sparse"])
def test_window_parts_cover_the_window_exactly_once(log, window):
    # Event times jump around arrival order; two sources. A wide window is read in seq
    # order (dense), a narrow one through the time index (sparse); either way the parts
    # together hold every event of the window once, and only those.
    times = [(i * 7919) % 1000 for i in range(400)]
    log.append_sync([ev(f"m{i}", "src_a" if i % 3 else "src_b", ts=t)
                     for i, t in enumerate(times)])
    lo, hi = window
    for max_seq, sources in ((None, None), (300, None), (None, ("src_b",))):
        parts = log.window_parts(lo, hi, max_seq, max_parts=4, min_events=10)
        assert 1 < len(parts) <= 4 and all(p.dense == (window == (0, 10_000)) for p in parts)
        assert [p.after_seq for p in parts[1:]] == [p.upto_seq for p in parts[:-1]]
        got = [seq for p in parts for chunk in log.scan_part(p, lo, hi, 7, source_ids=sources)
               for seq, _ in chunk]
        expected = [seq for chunk in log.scan_window(lo, hi, max_seq, source_ids=sources)
                    for _, seq, _ in chunk]
        assert sorted(got) == sorted(expected) and len(got) == len(set(got)) > 0
        assert log.count_window(lo, hi, max_seq, source_ids=sources) == len(expected)


def test_window_parts_do_not_split_small_windows(log):
    log.append_sync([ev(f"m{i}", ts=i) for i in range(30)])
    assert len(log.window_parts(0, 100, None, max_parts=8, min_events=50)) == 1
    assert len(log.window_parts(0, 100, None, max_parts=8, min_events=10)) == 3


def test_a_read_only_view_reads_and_refuses_writes(log):
    log.append_sync([ev("m1"), ev("m2")])
    view = log.reader_factory()()
    try:
        assert view.last_seq() == 2 and view.count() == 2
        with pytest.raises(RuntimeError, match="read-only"):
            view.append_sync([ev("m3")])
    finally:
        view.close()
    assert log.count() == 2

def test_window_chunk_is_the_first_chunk_scan_window_yields(log):
    # Bodies with multi-byte UTF-8 and escapes, event times before 1970, two sources.
    times = [500, -100, 300, 100, 900, 300, 100, 1000, 50, 300, -7]
    events = []
    for i, t in enumerate(times):
        body = {"type": "track", "messageId": f"m{i}", "note": "héllo \\n wörld" * (i % 4)}
        events.append(NewEvent("s1" if i % 3 else "s2", "track", f"m{i}", None, None, None, t,
                               0, json.dumps(body, ensure_ascii=False).encode()))
    log.append_sync(events)
    cases = [dict(ts_from=-1000, ts_to=2000, max_seq=None),
             dict(ts_from=100, ts_to=1000, max_seq=None, after=(300, 3)),
             dict(ts_from=0, ts_to=2000, max_seq=8, source_ids=("s1",)),
             dict(ts_from=0, ts_to=2000, max_seq=None, source_ids=()),
             dict(ts_from=200, ts_to=2000, max_seq=None, after=(100, 4)),  # before ts_from
             dict(ts_from=2000, ts_to=3000, max_seq=None)]
    for case in cases:
        for limit in (1, 3, 100):
            expected = next(log.scan_window(batch=limit, **case), [])
            assert log.window_chunk(limit=limit, **case) == expected, (case, limit)
    assert [s for _, s, _ in log.window_chunk(-1000, 2000, None, 3)] == [2, 11, 9]


def test_query_filters_and_cursor(log):
    log.append_sync([ev("a", "s1", ts=10, userId="u1", event="A"),
                     ev("b", "s2", ts=20, kind="page", userId="u2"),
                     ev("c", "s1", ts=30, userId="u2", event="B"),
                     ev("d", "s1", ts=40, userId="u1", event="A")])

    def ids(**kw) -> list[str]:
        return [json.loads(r)["messageId"] for r in log.query(EventQuery(**kw))]

    assert ids() == ["a", "b", "c", "d"]
    assert ids(source_ids=["s1"]) == ["a", "c", "d"]
    assert ids(types=["page"]) == ["b"]
    assert ids(event_name="A") == ["a", "d"]
    assert ids(user_id="u2") == ["b", "c"]
    assert ids(ts_from=20, ts_to=40) == ["b", "c"]
    assert ids(after_seq=2, limit=1) == ["c"]
    assert ids(descending=True, before_seq=3) == ["b", "a"]


def test_query_by_person_ids(log):
    """The console's activity log reads a person's events by any of their ids at once."""
    log.append_sync([ev("a", anonymousId="anon-1"), ev("b", userId="u1", anonymousId="anon-1"),
                     ev("c", userId="u1"), ev("d", anonymousId="anon-2"), ev("e", userId="u2"),
                     ev("f", userId="anon-2")])
    found = [json.loads(r)["messageId"]
             for r in log.query(EventQuery(person_ids=["anon-1", "u1"]))]
    assert found == ["a", "b", "c"]
    assert [json.loads(r)["messageId"] for r in log.query(EventQuery(person_ids=["anon-2"]))] \
        == ["d", "f"]


def test_rejections_are_kept(log):
    log.append_sync([ev("ok")], [NewRejection("src_a", 3, "missing_field", "why", "event", 7,
                                              b'{"type":"track"}')])
    [row] = log.rejections("src_a", None, 10)
    assert (row["index"], row["code"], row["reason"], row["field"], row["body"]) == (
        3, "missing_field", "why", "event", b'{"type":"track"}')
    assert log.rejections("src_other", None, 10) == []


def test_wait_for_wakes_on_commit(log):
    async def scenario() -> tuple[int, float]:
        started = time.monotonic()
        waiter = asyncio.ensure_future(log.wait_for(0, 10))
        await asyncio.sleep(0.05)
        await log.append([ev("m1")])
        return await waiter, time.monotonic() - started

    seq, elapsed = asyncio.run(scenario())
    assert seq == 1 and elapsed < 5


def test_close_finishes_queued_commits(tmp_path):
    log = SQLiteEventLog(tmp_path / "log.db")
    blocker = Blocker(tmp_path / "log.db")
    results = []
    thread = threading.Thread(target=lambda: results.append(log.append_sync([ev("m1")])))
    thread.start()
    wait_until(lambda: log._pending == 1)
    closer = threading.Thread(target=log.close)
    closer.start()
    time.sleep(0.1)
    blocker.release()
    closer.join(10)
    thread.join(10)
    assert results[0].seqs == [1]
    with pytest.raises(Overloaded):  # a closed log refuses, it does not hang
        log.append_sync([ev("m2")])
    reopened = SQLiteEventLog(tmp_path / "log.db")
    assert reopened.last_seq() == 1
    reopened.close()


# -- back-pressure -----------------------------------------------------------------------
def test_full_queue_raises_overloaded(tmp_path):
    log = SQLiteEventLog(tmp_path / "log.db", max_pending=10)
    blocker = Blocker(tmp_path / "log.db")
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(
        log.append_sync([ev(f"a{i}") for i in range(6)])))]
    threads[0].start()
    wait_until(lambda: log._pending == 6)
    with pytest.raises(Overloaded) as refused:
        log.append_sync([ev(f"b{i}") for i in range(5)])  # 6 + 5 > 10
    assert refused.value.status == 503 and refused.value.retry_after > 0
    threads.append(threading.Thread(target=lambda: results.append(
        log.append_sync([ev(f"c{i}") for i in range(4)]))))  # 6 + 4 fits
    threads[1].start()
    wait_until(lambda: log._pending == 10)
    blocker.release()
    for t in threads:
        t.join(10)
    assert sorted(r.stored for r in results) == [4, 6]
    assert sorted(m for _, m in stored_ids(log)) == sorted(
        [f"a{i}" for i in range(6)] + [f"c{i}" for i in range(4)])
    # An idle log takes a batch bigger than the limit rather than refusing it forever.
    assert log.append_sync([ev(f"d{i}") for i in range(25)]).stored == 25
    log.close()
