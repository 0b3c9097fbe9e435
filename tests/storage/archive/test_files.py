"""Reading an archive file by seq: the rows asked for, whichever row groups hold them, and
only the row groups that can (picked by the seq and event-time statistics)."""

from __future__ import annotations

import random
from unittest import mock

import pyarrow.parquet as pq

from millpond.storage.archive import files
from millpond.storage.models import EventQuery


def _file(tmp_path, n: int = 60, group: int = 5):
    rng = random.Random(3)
    rows = sorted(((seq, rng.randrange(0, 1000), 0, "src", "track", None, None, None,
                    f"m{seq}", b"{}") for seq in range(1, n + 1)), key=lambda r: (r[1], r[0]))
    chunks = [rows[i:i + group] for i in range(0, n, group)]  # one row group per chunk
    files.write(tmp_path, "log.parquet", chunks, 1, n)
    return tmp_path / "log.parquet", {r[0]: r[1] for r in rows}


def test_rows_by_seq_with_and_without_their_event_times(tmp_path):
    path, ts_of = _file(tmp_path)
    assert pq.ParquetFile(path).metadata.num_row_groups == 12
    wanted = [7, 41, 3, 60]
    for ts in (None, [ts_of[s] for s in wanted]):
        table = files.by_seqs(path, wanted, ts)
        assert sorted(zip(table["seq"].to_pylist(), table["ts"].to_pylist(), strict=True)) \
            == sorted((s, ts_of[s]) for s in wanted)
    assert files.by_seqs(path, [999]).num_rows == 0


def test_event_times_narrow_the_row_groups_read(tmp_path):
    path, ts_of = _file(tmp_path)
    # rows sorted by time: every row group's seq range is wide, its time range narrow
    wanted = [s for s, _ in sorted(ts_of.items(), key=lambda kv: (kv[1], kv[0]))[10:15]]
    read = []
    real = pq.ParquetFile.read_row_group

    def counting(self, i, *args, **kwargs):
        read.append(i)
        return real(self, i, *args, **kwargs)

    with mock.patch.object(pq.ParquetFile, "read_row_group", counting):
        by_time = files.by_seqs(path, wanted, [ts_of[s] for s in wanted])
        groups_by_time = len(read)
        read.clear()
        by_seq = files.by_seqs(path, wanted)
    assert sorted(by_time["seq"].to_pylist()) == sorted(by_seq["seq"].to_pylist()) \
        == sorted(wanted)
    assert groups_by_time <= 2 < len(read), (groups_by_time, len(read))


def test_each_row_group_read_keeps_only_the_rows_asked_for(tmp_path):
    """Seqs spread over a file read every row group; each is filtered as it is read.
    Kept whole until the end, a million-event file's bodies were held at once: a segment
    re-evaluating 121 people after its build took the server from 300 MB to 1 GB."""
    path, _ = _file(tmp_path)
    wanted = list(range(1, 61, 6))  # one in each of 10 row groups, or so
    held: list[int] = []
    real = files.pa.concat_tables

    def noting(tables, *args, **kwargs):
        held.append(sum(t.num_rows for t in tables))
        return real(tables, *args, **kwargs)

    with mock.patch.object(files.pa, "concat_tables", noting):
        table = files.by_seqs(path, wanted)
    assert sorted(table["seq"].to_pylist()) == wanted
    assert held == [len(wanted)]


def test_one_row_by_seq_decodes_the_bodies_of_one_row_group(tmp_path):
    path, ts_of = _file(tmp_path)
    bodies: list[int] = []
    real = pq.ParquetFile.read_row_group

    def counting(self, i, *args, columns=None, **kwargs):
        if columns is None or "body" in columns:
            bodies.append(i)
        return real(self, i, *args, columns=columns, **kwargs)

    with mock.patch.object(pq.ParquetFile, "read_row_group", counting):
        for seq in (1, 33, 60):
            bodies.clear()
            row = files.one_seq(path, seq)
            assert (row["seq"].to_pylist(), row["ts"].to_pylist()) == ([seq], [ts_of[seq]])
            assert len(bodies) == 1, bodies
        assert files.one_seq(path, 999).num_rows == 0
    # by_seq, for a range, reads every group whose seq range may hold it: most of them
    bodies.clear()
    with mock.patch.object(pq.ParquetFile, "read_row_group", counting):
        assert files.by_seq(path, 32, 33)["seq"].to_pylist() == [33]
    assert len(bodies) > 1


def test_a_file_without_some_seqs(tmp_path):
    path, ts_of = _file(tmp_path)
    kept = [r for chunk in files.without_seqs(path, [5, 6, 50]) for r in chunk]
    assert sorted(r[0] for r in kept) == [s for s in range(1, 61) if s not in (5, 6, 50)]
    assert [(r[1], r[0]) for r in kept] == sorted((r[1], r[0]) for r in kept)  # order kept
    assert files.seqs_count(path, [5, 6, 50, 999]) == 3


def test_pages_by_seq_across_spans_and_files(tmp_path, monkeypatch):
    from millpond.storage.archive import reader
    from millpond.storage.archive.place import LocalPlace

    monkeypatch.setattr(reader, "SPAN", 7)  # many spans a file, pages across their edges
    rng = random.Random(9)
    place = LocalPlace(tmp_path)
    listed, expected = [], []
    for first in (1, 41):
        rows = sorted(((seq, rng.randrange(0, 1000), 0, "src", "identify" if seq % 4 == 0
                        else "track", None, None, None, f"m{seq}", b"{}")
                       for seq in range(first, first + 40) if seq % 9), key=lambda r: (r[1], r[0]))
        listed.append(place.write(f"log-{first}.parquet", [rows[i:i + 5] for i in range(
            0, len(rows), 5)], first, first + 39))
        expected += sorted((r[0], r[1], r[4]) for r in rows)
    archive = reader.ArchiveReader(place)
    archive._listed(listed)
    for after, limit, upto, types in ((0, 1000, None, None), (3, 5, None, None),
                                      (12, 9, 70, None), (0, 6, None, frozenset({"identify"})),
                                      (38, 4, None, None), (80, 10, None, None)):
        want = [(s, t) for s, t, kind in expected if s > after and (upto is None or s <= upto)
                and (types is None or kind in types)][:limit]
        got = archive.read(after, limit, upto, types)
        assert [(e.seq, e.ts_ms) for e in got] == want, (after, limit, upto, types)
    assert len(archive._spans) <= reader.SPANS_KEPT


def test_query_matches_a_plain_filter_and_reads_bodies_only_of_what_it_returns(tmp_path):
    rng = random.Random(5)
    rows = sorted(((seq, rng.randrange(0, 1000), 5_000 + seq, rng.choice(["a", "b"]),
                    rng.choice(["track", "identify"]), rng.choice(["Clicked", None]),
                    rng.choice(["u1", "u2", None]), None, f"m{seq}", b'{"n": %d}' % seq)
                   for seq in range(1, 301)), key=lambda r: (r[1], r[0]))
    files.write(tmp_path, "log.parquet", [rows[i:i + 20] for i in range(0, 300, 20)], 1, 300)
    path = tmp_path / "log.parquet"
    bodies_read = []
    real = pq.ParquetFile.read_row_group

    def counting(self, i, columns=None, **kwargs):
        if columns is None or "body" in columns:
            bodies_read.append(i)
        return real(self, i, columns=columns, **kwargs)

    queries = [EventQuery(limit=7), EventQuery(descending=True, limit=5),
               EventQuery(types=["identify"], source_ids=["a"], limit=9),
               EventQuery(user_id="u2", event_name="Clicked", ts_from=200, ts_to=800,
                          limit=1000),
               EventQuery(after_seq=40, before_seq=200, descending=True, limit=11),
               EventQuery(received_from=5_100, received_to=5_150, limit=3),
               EventQuery(user_id="nobody", limit=10)]
    for _ in range(40):
        low = rng.randrange(0, 300)
        queries.append(EventQuery(after_seq=low, before_seq=low + rng.randrange(1, 200),
                                  ts_from=rng.randrange(0, 500), types=rng.choice(
                                      [None, ["track"]]), descending=rng.random() < 0.5,
                                  limit=rng.randrange(1, 40)))
    for q in queries:
        keep = [r for r in rows
                if (q.after_seq is None or r[0] > q.after_seq)
                and (q.before_seq is None or r[0] < q.before_seq)
                and (q.ts_from is None or r[1] >= q.ts_from)
                and (q.ts_to is None or r[1] < q.ts_to)
                and (q.received_from is None or r[2] >= q.received_from)
                and (q.received_to is None or r[2] < q.received_to)
                and (not q.source_ids or r[3] in q.source_ids)
                and (not q.types or r[4] in q.types)
                and (q.event_name is None or r[5] == q.event_name)
                and (q.user_id is None or r[6] == q.user_id)]
        want = sorted(((r[0], r[1], r[9]) for r in keep), reverse=q.descending)[:q.limit]
        bodies_read.clear()
        with mock.patch.object(pq.ParquetFile, "read_row_group", counting):
            table = files.query(path, q)
        got = list(zip(table["seq"].to_pylist(), table["ts"].to_pylist(),
                       table["body"].to_pylist(), strict=True))
        assert got == want, q
        # bodies come only from the row groups that hold the rows returned
        returned = set(want)
        holding = {i // 20 for i, r in enumerate(rows) if (r[0], r[1], r[9]) in returned}
        assert sorted(bodies_read) == sorted(holding), q
