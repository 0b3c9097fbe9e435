"""One archive file: writing a sealed range of log rows as Parquet, and reading it back by
event-time window or by seq.

Why sorted by (ts, seq) within a file: replays read by event-time window, so row groups
in time order let a window skip all but the row groups its span touches (their ``ts``
statistics), and a scan resuming from a cursor starts at the first row group that can
hold it. Reads by seq (the live feed, a first sync) sort the few row groups they need.

Crash safety of a write: the file is written under a temporary name, fsynced, renamed
and its directory fsynced, so a file under its final name is always whole. It only
counts once the backend's manifest lists it (in the same transaction that removes its
rows from the hot store); a file the manifest does not list is an interrupted attempt,
removed at open.
"""

# pyright: basic
# (pyarrow ships no type information: strict mode would flag every call into it)

from __future__ import annotations

import bisect
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute
import pyarrow.parquet as pq

from millpond.storage.models import EventQuery, StoredEvent

#: pyarrow.compute's functions are made at import time: no checker can see them.
pc: Any = pyarrow.compute

SCHEMA = pa.schema([
    ("seq", pa.int64()), ("ts", pa.int64()), ("received", pa.int64()),
    ("source_id", pa.string()), ("type", pa.string()), ("event", pa.string()),
    ("user_id", pa.string()), ("anonymous_id", pa.string()),
    ("message_id", pa.string()), ("body", pa.binary()),
])
#: A row as one struct (its fields are SCHEMA's columns): how rows are converted.
_ROW = pa.struct(list(SCHEMA))
#: Rows per row group: the unit a reader skips or reads. Small enough that a file's
#: groups cover narrow slices of event time (an event-time window reads little more than
#: it needs: bench/archive.py), large enough that per-group overhead stays small.
ROW_GROUP = 10_000

#: One log row, in SCHEMA's column order.
Row = tuple[int, int, int, str, str, str | None, str | None, str | None, str, bytes]


class FileStats(msgspec.Struct, frozen=True):
    """What the manifest keeps of a file: its seq range, event-time span, size."""

    name: str
    first_seq: int
    last_seq: int
    ts_min: int
    ts_max: int
    events: int
    bytes: int


def write(directory: Path, name: str, chunks: Iterable[Sequence[Row]], first_seq: int,
          last_seq: int) -> FileStats:
    """Write the range ``first_seq..last_seq`` (gaps allowed) as ``name`` under
    ``directory``, durably (see the module docstring). ``chunks`` are its rows in (ts,
    seq) order, a row group's worth at a time: memory holds one chunk, not the range."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / name
    temporary = directory / f".{name}.tmp"
    # pyarrow takes column lists for both options; its stubs say bool
    options: dict[str, Any] = {"write_statistics": ["seq", "ts", "source_id", "received"],
                               "use_dictionary": ["source_id", "type"]}
    events, ts_min, ts_max = 0, None, None
    with pq.ParquetWriter(temporary, SCHEMA, compression="zstd", **options) as writer:
        for chunk in chunks:
            if not chunk:
                continue
            # The rows (tuples) become one struct array in a single pass inside pyarrow,
            # then its fields the columns: a third less CPU than transposing them in
            # Python and converting each column list (and the GIL held that much less).
            writer.write_batch(pa.RecordBatch.from_struct_array(pa.array(chunk, type=_ROW)),
                               row_group_size=ROW_GROUP)
            events += len(chunk)
            ts_min = chunk[0][1] if ts_min is None else ts_min
            ts_max = chunk[-1][1]
    _fsync(temporary)
    os.replace(temporary, final)
    _fsync(directory)
    return FileStats(name, first_seq, last_seq, ts_min or 0, ts_max or 0, events,
                     final.stat().st_size)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _groups(meta: pq.FileMetaData, column: str) -> Iterator[tuple[int, int, int]]:
    """(row group, min, max) of ``column`` per row group."""
    index = meta.schema.names.index(column)
    for i in range(meta.num_row_groups):
        stats = meta.row_group(i).column(index).statistics
        if stats is None or not stats.has_min_max:
            yield i, -(1 << 62), 1 << 62
        else:
            yield i, stats.min, stats.max


def _filter(table: pa.Table, after: tuple[int, int], ts_to: int, max_seq: int | None,
            source_ids: tuple[str, ...] | None) -> pa.Table:
    ts, seq = table["ts"], table["seq"]
    mask = pc.and_(pc.or_(pc.greater(ts, after[0]),
                          pc.and_(pc.equal(ts, after[0]), pc.greater(seq, after[1]))),
                   pc.less(ts, ts_to))
    if max_seq is not None:
        mask = pc.and_(mask, pc.less_equal(seq, max_seq))
    if source_ids is not None:
        mask = pc.and_(mask, pc.is_in(table["source_id"], pa.array(source_ids, pa.string())))
    return table.filter(mask)


def window_events(path: Any, after: tuple[int, int], ts_to: int, max_seq: int | None,
                  source_ids: tuple[str, ...] | None) -> Iterator[StoredEvent]:
    """The file's events after (ts, seq) ``after`` with ``ts < ts_to`` (and the filters), in
    (ts, seq) order, a row group at a time: row groups outside the span are not read."""
    file = pq.ParquetFile(path)
    for group, low, high in _groups(file.metadata, "ts"):
        if high < after[0] or low >= ts_to:
            continue
        table = _filter(file.read_row_group(group, columns=["seq", "ts", "source_id", "body"]),
                        after, ts_to, max_seq, source_ids)
        yield from map(StoredEvent, table["seq"].to_pylist(), table["ts"].to_pylist(),
                       table["body"].to_pylist())


def count(path: Any, ts_from: int, ts_to: int, max_seq: int | None,
          source_ids: tuple[str, ...] | None) -> int:
    """How many of the file's events :func:`window_events` would give from ``ts_from``."""
    file = pq.ParquetFile(path)
    total = 0
    for group, low, high in _groups(file.metadata, "ts"):
        if high < ts_from or low >= ts_to:
            continue
        table = file.read_row_group(group, columns=["seq", "ts", "source_id"])
        total += _filter(table, (ts_from, -1), ts_to, max_seq, source_ids).num_rows
    return total


def expired_rows(path: Any, source_id: str, before_ms: int) -> pa.Table:
    """(message_id, ts, user_id, anonymous_id) of the file's events of ``source_id``
    that arrived before ``before_ms``; row groups whose ``received`` statistics rule it
    out are not read."""
    file = pq.ParquetFile(path)
    columns = ["source_id", "received", "message_id", "ts", "user_id", "anonymous_id"]
    parts = [file.read_row_group(g, columns=columns)
             for g, low, _high in _groups(file.metadata, "received") if low < before_ms]
    if not parts:
        return SCHEMA.empty_table().select(columns)
    table = pa.concat_tables(parts)
    return table.filter(pc.and_(pc.equal(table["source_id"], source_id),
                                pc.less(table["received"], before_ms)))


def rewritten(path: Any, source_id: str, before_ms: int) -> Iterator[list[Row]]:
    """The file's rows (in its order) without the events of ``source_id`` that arrived
    before ``before_ms``, a row group at a time: what retention writes in its place."""
    return _without(path, lambda table: pc.and_(pc.equal(table["source_id"], source_id),
                                                pc.less(table["received"], before_ms)))


def rewritten_name(name: str) -> str:
    """The name of ``name`` written again without some rows (a deletion, retention):
    ``log-A-B.parquet`` -> ``log-A-B.r1.parquet`` -> ``log-A-B.r2.parquet``; only the last
    ``/`` segment counts (a Parquet destination's keys are paths). Why a new name, never
    the same one: the old file stays listed and whole until the swap to the new one
    commits, so a crash at any moment leaves one complete copy listed."""
    folder, slash, base = name.rpartition("/")
    m = _GENERATION.fullmatch(base)
    stem, generation = (m[1], int(m[2] or 0)) if m else (base.removesuffix(".parquet"), 0)
    return f"{folder}{slash}{stem}.r{generation + 1}.parquet"


def previous_name(name: str) -> str | None:
    """The name :func:`rewritten_name` made ``name`` from, or None for a first write: what
    a swap a crash interrupted after its commit may have left behind."""
    folder, slash, base = name.rpartition("/")
    m = _GENERATION.fullmatch(base)
    if m is None or m[2] is None:
        return None
    generation = int(m[2])
    return f"{folder}{slash}{m[1]}" + (f".r{generation - 1}" if generation > 1 else "") \
        + ".parquet"


_GENERATION = re.compile(r"(.*?)(?:\.r(\d+))?\.parquet")


def of_people(table: pa.Table, ids: Sequence[str]) -> Any:
    """The mask of ``table``'s rows whose ``user_id`` or ``anonymous_id`` is one of ``ids``
    (the archive's files and a Parquet destination's share both columns)."""
    wanted = pa.array(list(ids), pa.string())
    return pc.or_(pc.fill_null(pc.is_in(table["user_id"], value_set=wanted), False),
                  pc.fill_null(pc.is_in(table["anonymous_id"], value_set=wanted), False))


def people_count(path: Any, ids: Sequence[str]) -> int:
    """How many of the file's events belong to ``ids`` (by user id or anonymous id)."""
    return people_rows(path, ids).num_rows


def people_rows(path: Any, ids: Sequence[str]) -> pa.Table:
    """(user_id, anonymous_id) of the file's events that belong to ``ids``; the ids are
    not sorted in a file, so every row group's two id columns are read."""
    table = pq.read_table(path, columns=["user_id", "anonymous_id"])
    return table.filter(of_people(table, ids))


def without_people(path: Any, ids: Sequence[str]) -> Iterator[list[Row]]:
    """The file's rows (in its order) without the events of ``ids``: what a deletion
    (``millpond.regulations``) writes in its place."""
    return _without(path, lambda table: of_people(table, ids))


def _without(path: Any, drop: Callable[[pa.Table], Any]) -> Iterator[list[Row]]:
    file = pq.ParquetFile(path)
    for g in range(file.metadata.num_row_groups):
        table = file.read_row_group(g)
        table = table.filter(pc.invert(drop(table)))
        yield list(zip(*(table[c].to_pylist() for c in SCHEMA.names), strict=True))


def query(path: Any, q: EventQuery) -> pa.Table:
    """The file's (seq, ts, body) matching ``q``'s filters, in ``q``'s seq order, at most
    ``q.limit``; row groups outside its seq and time bounds are not read.

    Two passes, because ``body`` is nearly all of a file: the columns the filters read
    pick the rows, a row group at a time in the order of the groups' seq bounds, until
    no later group can hold a row that comes earlier in ``q``'s order than those picked
    (rows are in (ts, seq) order, so the groups' seq ranges overlap); then only the
    groups of the picked rows are read for their bodies. Reading every matching group
    whole, for a page of 50, took 1.7 s and held every body of an archived million
    events in memory."""
    file = pq.ParquetFile(path)
    low_seq = -1 if q.after_seq is None else q.after_seq
    high_seq = (1 << 62) if q.before_seq is None else q.before_seq
    low_ts = -(1 << 62) if q.ts_from is None else q.ts_from
    high_ts = (1 << 62) if q.ts_to is None else q.ts_to
    seqs = {g: (lo, hi) for g, lo, hi in _groups(file.metadata, "seq")}
    groups = [g for g, lo, hi in _groups(file.metadata, "ts")
              if hi >= low_ts and lo < high_ts
              and seqs[g][1] > low_seq and seqs[g][0] < high_seq]
    order = "descending" if q.descending else "ascending"
    groups.sort(key=lambda g: -seqs[g][1] if q.descending else seqs[g][0])
    columns = ["seq", "ts", *(column for column, used in (
        ("source_id", q.source_ids), ("type", q.types), ("event", q.event_name is not None),
        ("user_id", q.user_id is not None),
        ("received", q.received_from is not None or q.received_to is not None)) if used)]
    picked: list[tuple[int, int, int]] = []  # (seq, group, row), in q's order
    for g in groups:
        if len(picked) >= q.limit:
            last = picked[-1][0]
            if (seqs[g][1] < last) if q.descending else (seqs[g][0] > last):
                break  # the groups after this one start further away still
        part = file.read_row_group(g, columns=columns)
        rows = pc.indices_nonzero(_matching(part, q, low_seq, high_seq, low_ts, high_ts))
        found = pa.table({"seq": part["seq"].take(rows), "row": rows})
        if found.num_rows > q.limit:
            found = found.take(pc.select_k_unstable(found, q.limit, [("seq", order)]))
        picked += zip(found["seq"].to_pylist(), [g] * found.num_rows,
                      found["row"].to_pylist(), strict=True)
        picked.sort(reverse=q.descending)
        del picked[q.limit:]
    if not picked:
        return pa.table({c: pa.array([], SCHEMA.field(c).type) for c in ("seq", "ts", "body")})
    by_group: dict[int, list[int]] = {}
    for _seq, g, row in picked:
        by_group.setdefault(g, []).append(row)
    table = pa.concat_tables(file.read_row_group(g, columns=["seq", "ts", "body"]).take(rows)
                             for g, rows in by_group.items())
    return table.sort_by([("seq", order)])


def _matching(part: pa.Table, q: EventQuery, low_seq: int, high_seq: int, low_ts: int,
              high_ts: int) -> Any:
    """The mask of ``part``'s rows that ``q``'s bounds and filters keep."""
    checks = [pc.greater(part["seq"], low_seq), pc.less(part["seq"], high_seq),
              pc.greater_equal(part["ts"], low_ts), pc.less(part["ts"], high_ts)]
    for column, values in (("source_id", q.source_ids), ("type", q.types)):
        if values:
            checks.append(pc.is_in(part[column], pa.array(values, pa.string())))
    for column, value in (("event", q.event_name), ("user_id", q.user_id)):
        if value is not None:
            checks.append(pc.equal(part[column], value))
    if q.received_from is not None:
        checks.append(pc.greater_equal(part["received"], q.received_from))
    if q.received_to is not None:
        checks.append(pc.less(part["received"], q.received_to))
    mask = checks[0]
    for check in checks[1:]:
        mask = pc.and_(mask, check)
    return mask


def of_types(table: pa.Table, types: frozenset[str]) -> pa.Table:
    """The rows of ``table`` whose ``type`` is one of ``types``."""
    return table.filter(pc.is_in(table["type"], pa.array(sorted(types), pa.string())))


def by_seq(path: Any, after_seq: int, upto_seq: int,
           columns: Sequence[str] = ("seq", "ts", "body")) -> pa.Table:
    """The file's rows with ``after_seq < seq <= upto_seq``, sorted by seq."""
    file = pq.ParquetFile(path)
    parts = []
    for g, low, high in _groups(file.metadata, "seq"):
        if high > after_seq and low <= upto_seq:  # each group filtered as it is read:
            part = file.read_row_group(g, columns=list(columns))  # memory holds the range,
            seq = part["seq"]                                      # not the whole file
            parts.append(part.filter(pc.and_(pc.greater(seq, after_seq),
                                             pc.less_equal(seq, upto_seq))))
    if not parts:
        return pa.table({c: pa.array([], SCHEMA.field(c).type) for c in columns})
    return pa.concat_tables(parts).sort_by("seq")


def one_seq(path: Any, seq: int, columns: Sequence[str] = ("seq", "ts", "body")) -> pa.Table:
    """The file's row at ``seq`` (no rows if it has none).

    Why not :func:`by_seq`: a file is sorted by event time, so nearly every row group's
    seq range holds any seq, and reading ``body`` from all of them to keep one row took
    300 ms in a million-event file (a debugger page, an event by seq). Here each
    candidate group's ``seq`` column alone is read until one holds it, then that group's
    other columns."""
    file = pq.ParquetFile(path)
    for g, low, high in _groups(file.metadata, "seq"):
        if low <= seq <= high:
            at = pc.index(file.read_row_group(g, columns=["seq"])["seq"], seq).as_py()
            if at >= 0:
                return file.read_row_group(g, columns=list(columns)).slice(at, 1)
    return pa.table({c: pa.array([], SCHEMA.field(c).type) for c in columns})


def by_seqs(path: Any, seqs: Sequence[int], ts: Sequence[int] | None = None) -> pa.Table:
    """The file's (seq, ts, body) rows whose seq is one of ``seqs`` (any order); row groups
    whose statistics hold none of them are not read. With ``ts`` (each seq's event time,
    as the index knows it) a row group is picked by its ``ts`` and ``seq`` statistics
    both: a file is sorted by event time, so its row groups' seq ranges are wide and
    overlap, while their time ranges are narrow (an index chunk of events close in time
    reads one or two row groups, not the whole file)."""
    wanted = sorted(seqs)
    wanted_array = pa.array(wanted, pa.int64())
    keys = sorted(zip(ts, seqs, strict=True)) if ts is not None else []
    key_ts = [k[0] for k in keys]
    file = pq.ParquetFile(path)
    times = {g: (lo, hi) for g, lo, hi in _groups(file.metadata, "ts")}
    parts = []
    for g, low, high in _groups(file.metadata, "seq"):
        if ts is not None:
            t_low, t_high = times[g]
            hit = any(low <= k[1] <= high for k in keys[bisect.bisect_left(key_ts, t_low):
                                                          bisect.bisect_right(key_ts, t_high)])
        else:
            i = bisect.bisect_left(wanted, low)
            hit = i < len(wanted) and wanted[i] <= high
        if hit:  # filtered as read: memory holds the rows wanted, not every group read
            part = file.read_row_group(g, columns=["seq", "ts", "body"])
            parts.append(part.filter(pc.is_in(part["seq"], value_set=wanted_array)))
    if not parts:
        return pa.table({c: pa.array([], SCHEMA.field(c).type) for c in ("seq", "ts", "body")})
    return pa.concat_tables(parts)


def seqs_count(path: Any, seqs: Sequence[int]) -> int:
    """How many of ``seqs`` the file holds."""
    return by_seqs(path, seqs).num_rows


def without_seqs(path: Any, seqs: Sequence[int]) -> Iterator[list[Row]]:
    """The file's rows (in its order) without those of ``seqs``: what the cluster backend
    writes in its place when retention or a deletion removes archived events (its index
    names them by seq)."""
    gone = pa.array(sorted(seqs), pa.int64())
    return _without(path, lambda table: pc.is_in(table["seq"], value_set=gone))
