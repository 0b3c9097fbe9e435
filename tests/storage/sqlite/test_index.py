"""The SQLite index's own machinery: packed chunks, and how a part scanner splits and reads.
What every index promises is in ``tests/storage/contract``."""

from __future__ import annotations

import json
import sqlite3

import msgspec
import pytest

from millpond.storage.models import NewEvent, Window, WindowCursor
from millpond.storage.sqlite.index import SQLiteEventIndex
from millpond.storage.sqlite.log import SQLiteEventLog
from millpond.storage.sqlite.parts import DENSE

from ..helpers import ev


@pytest.fixture
def log(tmp_path):
    opened = SQLiteEventLog(tmp_path / "log.db")
    yield opened
    opened.close()


def plain_chunk(log: SQLiteEventLog, window: Window, after: WindowCursor | None,
                limit: int) -> list[tuple[int, int, bytes]]:
    """The chunk as a row-by-row SELECT returns it (what the packed chunk must equal)."""
    sql = "SELECT ts, seq, body FROM events WHERE (ts, seq) > (?, ?) AND ts < ? AND seq <= ?"
    extra = window.source_ids or ()
    if window.source_ids is not None:
        sql += f" AND source_id IN ({','.join('?' * len(extra))})"
    sql += " ORDER BY ts, seq LIMIT ?"
    start = (window.ts_from, 0) if after is None else (
        max(window.ts_from, after.ts), after.seq if after.ts >= window.ts_from else 0)
    with log.reading() as conn:
        return conn.execute(sql, (*start, window.ts_to, window.max_seq or 1 << 62, *extra,
                                  limit)).fetchall()


def test_a_packed_chunk_is_the_chunk_a_plain_scan_reads(log):
    # Bodies with multi-byte UTF-8 and escapes, event times before 1970, two sources.
    times = [500, -100, 300, 100, 900, 300, 100, 1000, 50, 300, -7]
    events = []
    for i, t in enumerate(times):
        body = {"type": "track", "messageId": f"m{i}", "note": "héllo \\n wörld" * (i % 4)}
        events.append(NewEvent("s1" if i % 3 else "s2", "track", f"m{i}", None, None, None, t,
                               0, json.dumps(body, ensure_ascii=False).encode()))
    log.submit(events).result()
    index = SQLiteEventIndex(log)
    cases = [(Window(-1000, 2000), None),
             (Window(100, 1000), WindowCursor(300, 3)),
             (Window(0, 2000, max_seq=8, source_ids=("s1",)), None),
             (Window(0, 2000, source_ids=()), None),
             (Window(200, 2000), WindowCursor(100, 4)),  # a cursor before ts_from
             (Window(2000, 3000), None)]
    for window, after in cases:
        for limit in (1, 3, 100):
            packed = [(e.ts_ms, e.seq, e.body) for e in index.chunk(window, after, limit)]
            assert packed == plain_chunk(log, window, after, limit), (window, after, limit)
    assert [e.seq for e in index.chunk(Window(-1000, 2000), None, 3)] == [2, 11, 9]


@pytest.mark.parametrize("window", [(0, 10_000), (300, 400)], ids=["dense", "sparse"])
def test_wide_windows_are_read_in_seq_order_and_narrow_ones_by_time(log, window):
    times = [(i * 7919) % 1000 for i in range(400)]
    log.submit([ev(f"m{i}", "src_a" if i % 3 else "src_b", ts=t)
                for i, t in enumerate(times)]).result()
    scanner = SQLiteEventIndex(log).part_scanner()
    lo, hi = window
    for max_seq, sources in ((None, None), (300, None), (None, ("src_b",))):
        w = Window(lo, hi, max_seq, sources)
        parts = scanner.parts(w, max_parts=4, min_events=10)
        assert 1 < len(parts) <= 4
        assert all((p.hint == DENSE) == (window == (0, 10_000)) for p in parts)
        assert [p.after_seq for p in parts[1:]] == [p.upto_seq for p in parts[:-1]]
        got = [seq for p in parts for chunk in scanner.scan(p, w, 7) for seq, _ in chunk]
        expected = sorted(i + 1 for i, t in enumerate(times) if lo <= t < hi
                          and (max_seq is None or i + 1 <= max_seq)
                          and (sources is None or ("src_a" if i % 3 else "src_b") in sources))
        assert sorted(got) == expected and len(got) == len(set(got)) > 0


def test_small_windows_are_not_split(log):
    log.submit([ev(f"m{i}", ts=i) for i in range(30)]).result()
    scanner = SQLiteEventIndex(log).part_scanner()
    assert len(scanner.parts(Window(0, 100), max_parts=8, min_events=50)) == 1
    assert len(scanner.parts(Window(0, 100), max_parts=8, min_events=10)) == 3


def test_a_part_scanner_reads_beside_the_writer_and_cannot_write(log):
    log.submit([ev("m1"), ev("m2")]).result()
    scanner = SQLiteEventIndex(log).part_scanner()
    with scanner._reader() as conn:
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone() == (2,)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("DELETE FROM events")
    log.submit([ev("m3")]).result()  # the writer was never blocked
    [part] = scanner.parts(Window(0, 10_000), max_parts=1, min_events=1)
    rows = [row for c in scanner.scan(part, Window(0, 10_000)) for row in c]
    assert [seq for seq, _ in rows] == [1, 2, 3]
    assert [msgspec.json.decode(body)["messageId"] for _, body in rows] == ["m1", "m2", "m3"]
