"""The SQLite log read by event time and by attributes: the same file, through its time
index (:mod:`.time_index`).

A window scan walks the time index's parts in (ts, seq) order from a cursor, a chunk at
a time, on a reader thread of its own that runs a couple of chunks ahead
(:mod:`.read_ahead`), and each chunk is built by SQLite in a single step
(:func:`_packed_group`), so the event loop that consumes it hardly notices the reading.
"""

from __future__ import annotations

import asyncio
import heapq
import sqlite3
import struct
from collections.abc import Iterator, Sequence
from itertools import accumulate, islice, starmap
from operator import attrgetter, lt
from typing import Any

import msgspec

from millpond.storage.columns import window_start
from millpond.storage.models import EventQuery, StoredEvent, Window, WindowCursor
from millpond.storage.sqlite.activity import PersonIndex
from millpond.storage.sqlite.connection import snapshot
from millpond.storage.sqlite.log import SQLiteEventLog
from millpond.storage.sqlite.parts import SQLitePartScanner, window_sql
from millpond.storage.sqlite.read_ahead import ReadAhead
from millpond.storage.sqlite.time_index import TimeIndex

#: Far above any seq: "no upper bound" as an SQLite integer.
NO_MAX_SEQ = 1 << 62


class SQLiteEventIndex:
    """:class:`~millpond.storage.contracts.EventIndex` over the log's own file."""

    def __init__(self, log: SQLiteEventLog, people: PersonIndex | None = None):
        self._log = log
        #: The per-person index (``activity.db``); None for an index used only to scan.
        self._people = people

    def scan(self, window: Window, *, after: WindowCursor | None = None,
             chunk: int = 2000) -> WindowScan:
        return WindowScan(self._log, window, after, chunk)

    async def count(self, window: Window) -> int:
        return await asyncio.to_thread(self._count, window)

    def _count(self, window: Window) -> int:
        where = "ts >= ? AND ts < ? AND seq <= ? AND seq > ?"
        if window.source_ids is not None:
            where += f" AND source_id IN ({','.join('?' * len(window.source_ids))})"
        limit_seq = NO_MAX_SEQ if window.max_seq is None else window.max_seq
        index = self._log.time_index
        while True:  # again if a range moved to the archive meanwhile
            archive = self._log.archive
            upto = archive.archived_upto() if archive is not None else 0
            with self._log.reading() as conn, snapshot(conn):
                hot = index.count(conn, _hot_parts(conn, index, upto, limit_seq), where,
                                  (window.ts_from, window.ts_to, limit_seq, upto,
                                   *(window.source_ids or ())))
            if archive is None:
                return hot
            total = hot + archive.count(window)
            if archive.archived_upto() == upto:
                return total

    async def query(self, q: EventQuery) -> list[StoredEvent]:
        return await asyncio.to_thread(self._query, q)

    def _query(self, q: EventQuery) -> list[StoredEvent]:
        """The hot rows after the archived ranges and the archive's, in ``q``'s order:
        newest first reads the hot store first; oldest first, the archive."""
        while True:  # again if a range moved to the archive meanwhile
            archive = self._log.archive
            upto = archive.archived_upto() if archive is not None else 0
            if archive is None or not upto:
                return self._query_hot(q, 0)
            if q.descending:
                out = self._query_hot(q, upto)
                if len(out) < q.limit:
                    out += archive.query(msgspec.structs.replace(q, limit=q.limit - len(out)))
            else:
                out = archive.query(q)
                if len(out) < q.limit:
                    out += self._query_hot(msgspec.structs.replace(q, limit=q.limit - len(out)),
                                           upto)
            if archive.archived_upto() == upto:
                return out

    def _query_hot(self, q: EventQuery, upto: int) -> list[StoredEvent]:
        where: list[str] = []
        args: list[Any] = []

        def add(clause: str, *values: Any) -> None:
            where.append(clause)
            args.extend(values)

        if upto:
            add("seq > ?", upto)
        if q.source_ids:
            add(f"source_id IN ({','.join('?' * len(q.source_ids))})", *q.source_ids)
        if q.types:
            add(f"type IN ({','.join('?' * len(q.types))})", *q.types)
        if q.event_name is not None:
            add("event = ?", q.event_name)
        if q.user_id is not None:
            add("user_id = ?", q.user_id)
        for column, op, value in (("ts", ">=", q.ts_from), ("ts", "<", q.ts_to),
                                  ("received", ">=", q.received_from),
                                  ("received", "<", q.received_to),
                                  ("seq", ">", q.after_seq), ("seq", "<", q.before_seq)):
            if value is not None:
                add(f"{column} {op} ?", value)
        sql = "SELECT seq, ts, body FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY seq {'DESC' if q.descending else 'ASC'} LIMIT ?"
        args.append(q.limit)
        with self._log.reading() as conn:
            return list(starmap(StoredEvent, conn.execute(sql, args)))

    async def person_events(self, ids: Sequence[str], *, before: WindowCursor | None = None,
                            limit: int = 50) -> list[StoredEvent]:
        return await asyncio.to_thread(self._person_index().events, ids, before, limit)

    async def count_person_events(self, ids: Sequence[str]) -> int:
        return await asyncio.to_thread(self._person_index().count, ids)

    def _person_index(self) -> PersonIndex:
        if self._people is None:
            raise RuntimeError("this index was opened without its per-person index")
        return self._people

    def part_scanner(self) -> SQLitePartScanner | None:
        """None once part of the log is archived: the part scanner reads ``log.db`` only,
        so callers then scan in process, through :meth:`scan`, which reads both tiers."""
        if self._log.archive is not None and self._log.archive.files():
            return None
        return SQLitePartScanner(self._log.path)

    def chunk(self, window: Window, after: WindowCursor | None,
              limit: int) -> list[StoredEvent]:
        """The first ``limit`` events of ``window`` after ``after``, blocking."""
        with self._log.reading() as conn:
            return _packed_chunk(conn, self._log.time_index, window, after, limit)


class WindowScan:
    """The async iterator :meth:`SQLiteEventIndex.scan` returns: chunks read ahead on a
    thread of its own; :meth:`aclose` (or :meth:`close`) stops that thread.

    The thread reads through a connection it borrows from the log's spares and gives back
    when it ends: the next scan finds its page cache warm, and scans one after another do
    not each grow a cache of their own."""

    def __init__(self, log: SQLiteEventLog, window: Window, after: WindowCursor | None,
                 chunk: int):
        conn: sqlite3.Connection | None = None
        merge = _ArchiveMerge(log, window)

        def read(cursor: WindowCursor | None) -> list[StoredEvent]:
            nonlocal conn
            if conn is None:
                conn = log.lend_reader()
            if log.archive is None or not log.archive.files():
                return _packed_chunk(conn, log.time_index, window, cursor, chunk)
            return merge.chunk(conn, cursor, chunk)

        def finish() -> None:
            if conn is not None:
                log.return_reader(conn)

        self._ahead = ReadAhead(read, after, _after_chunk, finish=finish)
        self._done = False

    def __aiter__(self) -> WindowScan:
        return self

    async def __anext__(self) -> list[StoredEvent]:
        if self._done:
            raise StopAsyncIteration
        try:
            rows = await self._ahead.get()
        except BaseException:
            self.close()
            raise
        if not rows:
            self.close()
            raise StopAsyncIteration
        return rows

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._ahead.close()

    async def aclose(self) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


class _ArchiveMerge:
    """A window scan's chunks when part of the log is archived: the hot store's chunk
    (rows after the archived ranges) merged with the archive's stream in (ts, seq) order.
    The stream is opened again from the cursor when a range was archived since it was
    opened, so a row moving tiers mid-scan is read exactly once."""

    def __init__(self, log: SQLiteEventLog, window: Window):
        self._log = log
        self._window = window
        self._upto: int | None = None
        self._stream: Iterator[StoredEvent] = iter(())
        self._next: StoredEvent | None = None

    def _open(self, upto: int, cursor: WindowCursor | None) -> None:
        archive = self._log.archive
        assert archive is not None
        self._upto = upto
        self._stream = archive.window(self._window, cursor)
        self._next = next(self._stream, None)

    def chunk(self, conn: sqlite3.Connection, cursor: WindowCursor | None,
              limit: int) -> list[StoredEvent]:
        archive = self._log.archive
        assert archive is not None
        while True:
            upto = archive.archived_upto()
            if upto != self._upto:
                self._open(upto, cursor)
            # Rows up to ``upto`` may still be in the hot store (a seal deletes them
            # after listing the file): they are read from the archive. Filtered in the
            # query, so a full chunk is a full chunk of rows this merge takes.
            hot = _packed_chunk(conn, self._log.time_index, self._window, cursor, limit, upto)
            full = len(hot) == limit
            if archive.archived_upto() == upto:
                break
        out: list[StoredEvent] = []
        i = 0
        while len(out) < limit:
            a = self._next
            h = hot[i] if i < len(hot) else None
            if h is None and (full or a is None):
                break  # beyond a full hot chunk's last row nothing is known yet
            if a is None or (h is not None and (h.ts_ms, h.seq) < (a.ts_ms, a.seq)):
                out.append(h)  # type: ignore[arg-type]  # h is set when a is None
                i += 1
            else:
                out.append(a)
                self._next = next(self._stream, None)
        return out


def _after_chunk(rows: list[StoredEvent]) -> WindowCursor:
    """Where the window continues after ``rows``: their last (ts, seq)."""
    last = rows[-1]
    return WindowCursor(last.ts_ms, last.seq)


#: One window chunk as one row: a hex index of (ts, seq, body length) per event (8, 8
#: and 4 bytes, big-endian; printf's %x writes a negative ts in two's complement) and
#: the bodies back to back. CAST makes both sides count bytes, whatever a body's type.
_PACKED = ("SELECT group_concat(printf('%016x%016x%08x', ts, seq,"
           " length(CAST(body AS BLOB))), ''),"
           " CAST(group_concat(CAST(body AS BLOB), '') AS BLOB) FROM ({inner})")
_unpack_index = struct.Struct(">qqI").iter_unpack
_by_position = attrgetter("ts_ms", "seq")


def _hot_parts(conn: sqlite3.Connection, index: TimeIndex, above_seq: int,
               max_seq: int) -> range:
    """The parts of the time index that hold rows ``above_seq < seq <= max_seq`` now
    (read in the caller's snapshot, so no row of a part begun after it is missed)."""
    last: int = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
    return index.parts(above_seq, min(max_seq, last))


def _packed_chunk(conn: sqlite3.Connection, index: TimeIndex, window: Window,
                  after: WindowCursor | None, limit: int,
                  above_seq: int = 0) -> list[StoredEvent]:
    """One chunk of a window scan, in (ts, seq) order over every part of the time index
    the window's seqs touch; only rows after ``above_seq`` (the archived ranges) when it
    is given. A log of more than ``MAX_ARMS`` parts is read a group at a time, and
    the groups' chunks merged."""
    cursor = window_start(window.ts_from, after)
    limit_seq = NO_MAX_SEQ if window.max_seq is None else window.max_seq
    with snapshot(conn):
        groups = index.groups(_hot_parts(conn, index, above_seq, limit_seq))
        chunks = [_packed_group(conn, index, group, window, cursor, limit_seq, limit,
                                above_seq) for group in groups]
    if len(chunks) == 1:
        return chunks[0]
    return list(islice(heapq.merge(*chunks, key=_by_position), limit))


def _packed_group(conn: sqlite3.Connection, index: TimeIndex, parts: range, window: Window,
                  cursor: tuple[int, int], limit_seq: int, limit: int,
                  above_seq: int) -> list[StoredEvent]:
    """The chunk from ``parts``, built by SQLite in a single step.

    Why: ``fetchall`` takes the GIL back for every row, so a reader thread beside a busy
    event loop (a replay evaluating the previous chunk) waits a switch interval per row
    and the read ahead barely moves. Here SQLite concatenates the chunk's (ts, seq,
    length) index and its bodies inside one ``sqlite3_step``, which runs without the
    GIL, and Python only slices the result.
    """
    inner, extra = window_sql(index, parts, window.source_ids, above_seq=bool(above_seq))
    above = (above_seq,) if above_seq else ()
    index_hex, blob = conn.execute(_PACKED.format(inner=inner), (
        cursor[0], cursor[1], window.ts_to, limit_seq, *above, *extra, limit)).fetchone()
    if index_hex is None:
        return []
    # Every step below is a C loop (map, accumulate, zip): this runs on the scan's
    # thread, which holds the GIL meanwhile, and a Python loop over the rows cost the
    # event loop beside it ~40 bytecodes per event.
    entries = list(_unpack_index(bytes.fromhex(index_hex)))  # (ts, seq, length) per event
    ts_list, seqs, sizes = zip(*entries, strict=True)
    ends = list(accumulate(sizes))
    if ends[-1] != len(blob):
        raise RuntimeError(f"window chunk of {len(blob)} bytes, index says {ends[-1]}")
    bodies = map(blob.__getitem__, map(slice, [0, *ends[:-1]], ends))
    rows = list(map(StoredEvent, seqs, ts_list, bodies))
    # (ts, seq) is unique, so (ts, seq, length) entries compare as their (ts, seq).
    if entries[0][:2] <= (cursor[0], cursor[1]) or not all(map(lt, entries, entries[1:])):
        # group_concat follows the inner ORDER BY in practice, but SQLite does not
        # promise it; (ts, seq) is unique, so the order is total.
        rows.sort(key=_by_position)
    return rows
