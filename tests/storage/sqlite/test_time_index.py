"""The log's time index in parts by seq: reads in time order across parts, counts, the
part scanner and the seal's walk agree with a plain computation, the queries use the
index without sorting, and logs made before parts open with it rebuilt."""

from __future__ import annotations

import random
import sqlite3

import pytest

from millpond.storage.models import Window, WindowCursor
from millpond.storage.sqlite import time_index
from millpond.storage.sqlite.index import SQLiteEventIndex
from millpond.storage.sqlite.log import SQLiteEventLog
from millpond.storage.sqlite.parts import window_sql
from millpond.storage.sqlite.seal_process import range_rows
from millpond.storage.sqlite.storage import SQLiteStorage

from ..helpers import ev

_rng = random.Random(7)
TIMES = [_rng.randrange(-50, 1000) for _ in range(60)]
TIMES[40] = TIMES[3]  # two events at one time, in different parts


@pytest.fixture
def log(tmp_path):
    """60 events in parts of 7 seqs (9 parts), event times in random order, two sources."""
    opened = SQLiteEventLog(tmp_path / "log.db", part_seqs=7)
    for start in range(0, len(TIMES), 13):  # commits that straddle parts
        opened.submit([ev(f"m{i}", "src_a" if i % 3 else "src_b", ts=TIMES[i])
                       for i in range(start, min(start + 13, len(TIMES)))]).result()
    yield opened
    opened.close()


def expected(window: Window, after: tuple[int, int] = (-(1 << 62), 0)) -> list[int]:
    """The window's seqs after ``after`` in (ts, seq) order, computed from TIMES."""
    rows = sorted((t, i + 1) for i, t in enumerate(TIMES)
                  if window.ts_from <= t < window.ts_to and (t, i + 1) > after
                  and (window.max_seq is None or i + 1 <= window.max_seq)
                  and (window.source_ids is None
                       or ("src_a" if i % 3 else "src_b") in window.source_ids))
    return [seq for _, seq in rows]


WINDOWS = [Window(-100, 2000), Window(100, 600), Window(0, 2000, max_seq=30),
           Window(0, 2000, source_ids=("src_b",)), Window(3000, 4000)]


@pytest.mark.parametrize("max_arms", [time_index.MAX_ARMS, 2])
def test_a_scan_in_time_order_merges_every_part(log, monkeypatch, max_arms):
    # With max_arms=2 the nine parts are read in groups and the groups' chunks merged.
    monkeypatch.setattr(time_index, "MAX_ARMS", max_arms)
    assert log.time_index.part_seqs == 7
    index = SQLiteEventIndex(log)
    for window in WINDOWS:
        for chunk in (1, 4, 100):
            got: list[int] = []
            after = None
            while rows := index.chunk(window, after, chunk):
                got += [e.seq for e in rows]
                after = WindowCursor(rows[-1].ts_ms, rows[-1].seq)
            assert got == expected(window), (window, chunk)


def test_counts_add_up_every_part(log, monkeypatch):
    monkeypatch.setattr(time_index, "MAX_ARMS", 2)
    index = SQLiteEventIndex(log)
    for window in WINDOWS:
        assert index._count(window) == len(expected(window)), window


@pytest.mark.parametrize("max_arms", [time_index.MAX_ARMS, 2])
def test_the_part_scanner_reads_each_event_once(log, monkeypatch, max_arms):
    monkeypatch.setattr(time_index, "MAX_ARMS", max_arms)  # 2: a part read in slices
    scanner = SQLiteEventIndex(log).part_scanner()
    assert scanner is not None
    for window in WINDOWS[:4]:
        parts = scanner.parts(window, max_parts=3, min_events=5)
        assert len(parts) > 1, (window, parts)
        got = [seq for p in parts for chunk in scanner.scan(p, window, 4) for seq, _ in chunk]
        assert sorted(got) == sorted(expected(window)) and len(got) == len(set(got))


def test_the_seal_walks_a_range_of_several_parts_in_time_order(log):
    # A range (seqs 10..40) that does not start or end at a part's edge.
    got = [row for chunk in range_rows(log.path, 9, 40) for row in chunk]
    ordered = sorted((t, i + 1) for i, t in enumerate(TIMES) if 9 < i + 1 <= 40)
    assert [(row[1], row[0]) for row in got] == ordered


def test_window_reads_seek_the_index_and_never_sort(log):
    # An expression index serves only queries that spell its expression the same way;
    # otherwise SQLite scans the table and sorts, which this plan would show.
    index = log.time_index
    sql, _ = window_sql(index, index.parts(0, 60), None, above_seq=True)
    with log.reading() as conn:
        plan = " / ".join(row[3] for row in conn.execute(
            "EXPLAIN QUERY PLAN " + sql, (0, 0, 1000, 60, 0, 10)))
    assert "TEMP B-TREE" not in plan, plan
    assert plan.count(f"USING INDEX {time_index.INDEX}") == 9, plan


def test_a_log_made_before_parts_gets_the_index_and_keeps_its_part_size(tmp_path):
    path = tmp_path / "log.db"
    first = SQLiteEventLog(path)
    first.submit([ev(f"m{i}", ts=t) for i, t in enumerate(TIMES)]).result()
    first.close()
    with sqlite3.connect(path) as conn:  # as a log made before parts was
        conn.execute(f"DROP INDEX {time_index.INDEX}")
        conn.execute("CREATE INDEX events_ts ON events(ts)")
    reopened = SQLiteEventLog(path, part_seqs=5)
    try:
        assert reopened.time_index.part_seqs == 5
        with reopened.reading() as conn:
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert time_index.LEGACY_INDEX not in names and time_index.INDEX in names
        got = [e.seq for e in SQLiteEventIndex(reopened).chunk(Window(-100, 2000), None, 100)]
        assert got == expected(Window(-100, 2000))
    finally:
        reopened.close()
    again = SQLiteEventLog(path, part_seqs=1_000)  # a made index keeps its size
    try:
        assert again.time_index.part_seqs == 5
    finally:
        again.close()


@pytest.mark.parametrize(("archive_range", "part"), [
    (2_000_000, 100_000), (500, 100_000), (0, 1_000_000)])
def test_a_new_log_has_small_parts_with_archiving_and_large_ones_without(tmp_path,
                                                                        archive_range, part):
    storage = SQLiteStorage(tmp_path / "data", archive_range=archive_range)
    try:
        assert storage.log.time_index.part_seqs == part
    finally:
        storage.close()
