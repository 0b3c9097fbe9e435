"""Scanning parts of a window from other processes: the SQLite index's
:class:`~millpond.storage.contracts.PartScanner`.

Why it works on SQLite: in WAL mode any number of processes can read the file while the
server writes it, so a preview's worker processes open the log themselves, each reading
its own seq range of the window, and the server only adds up their tallies.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Generator, Iterator, Sequence

from millpond.storage.models import Window, WindowPart
from millpond.storage.sqlite import time_index
from millpond.storage.sqlite.connection import connect, snapshot
from millpond.storage.sqlite.time_index import TimeIndex

#: A window holding at least 1/DENSE_FRACTION of a seq range is read in seq order.
DENSE_FRACTION = 4
#: ``WindowPart.hint`` of a part read in seq order, skipping the few rows outside the
#: window (cheaper than the time index when the window holds most rows of the range).
DENSE = "seq"


def window_sql(index: TimeIndex, parts: Sequence[int], source_ids: tuple[str, ...] | None,
               *, above_seq: bool = False) -> tuple[str, tuple[str, ...]]:
    """The window query over ``parts`` of the time index (params: cursor ts, cursor seq,
    ts_to, max seq, [the seq rows must be above, with ``above_seq``], *sources, limit)."""
    # A row value lets SQLite seek straight to the cursor in the (part, ts, rowid) index
    # instead of re-reading every row that shares the cursor's timestamp.
    where = "(ts, seq) > (?1, ?2) AND ts < ?3 AND seq <= ?4"
    n = 5
    if above_seq:
        where += " AND seq > ?5"
        n = 6
    extra: tuple[str, ...] = ()
    if source_ids is not None:
        marks = ",".join(f"?{n + i}" for i in range(len(source_ids)))
        where += f" AND source_id IN ({marks})"
        extra = tuple(source_ids)
        n += len(source_ids)
    return index.ordered("ts, seq, body", where, parts) + f" LIMIT ?{n}", extra


class SQLitePartScanner:
    """Picklable (it holds only the log's path); each call opens its own read-only
    connection, in whatever process it runs."""

    def __init__(self, path: str):
        self.path = path

    @contextlib.contextmanager
    def _reader(self) -> Generator[sqlite3.Connection]:
        conn = connect(self.path, "FULL", cache_kib=65536)
        conn.execute("PRAGMA query_only=1")
        try:
            yield conn
        finally:
            conn.close()

    def parts(self, window: Window, max_parts: int, min_events: int) -> list[WindowPart]:
        with self._reader() as conn, snapshot(conn):
            last: int = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
            upto = last if window.max_seq is None else min(window.max_seq, last)
            index = time_index.of(conn)
            size = 0 if index is None else index.count(
                conn, index.parts(0, upto), "ts >= ? AND ts < ? AND seq <= ?",
                (window.ts_from, window.ts_to, upto))
        # This backend gives every stored event the next seq, so ``upto`` is about the
        # number of rows the range holds. Only the reading strategy depends on that
        # guess, never which rows a part holds.
        hint = DENSE if size * DENSE_FRACTION >= upto else ""
        parts = max(1, min(max_parts, size // max(1, min_events)))
        bounds = [upto * i // parts for i in range(parts + 1)]
        return [WindowPart(lo, hi, hint) for lo, hi in zip(bounds, bounds[1:], strict=False)]

    def scan(self, part: WindowPart, window: Window,
             chunk: int = 5000) -> Iterator[list[tuple[int, bytes]]]:
        source_ids = window.source_ids
        sources = ""
        if source_ids is not None:
            sources = f" AND source_id IN ({','.join('?' * len(source_ids))})"
        with self._reader() as conn:
            if part.hint == DENSE:
                # ``+ts`` keeps SQLite off the time index: rows are read in rowid order,
                # which is sequential on disk.
                sql = ("SELECT seq, body FROM events WHERE seq > ? AND seq <= ?"
                       f" AND +ts >= ? AND +ts < ?{sources} ORDER BY seq LIMIT ?")
                after = part.after_seq
                while True:
                    rows = conn.execute(sql, (after, part.upto_seq, window.ts_from,
                                              window.ts_to, *(source_ids or ()),
                                              chunk)).fetchall()
                    if not rows:
                        return
                    yield rows  # (seq, body) as SQLite hands them: no object per row
                    after = rows[-1][0]
            index = time_index.of(conn)
            if index is None:
                return  # a file no log has opened: no rows
            parts = index.parts(part.after_seq, part.upto_seq)
            span = time_index.MAX_ARMS * index.part_seqs
            if len(parts) > time_index.MAX_ARMS:  # a slice of the log: split it
                for lo in range(part.after_seq, part.upto_seq, span):
                    yield from self.scan(WindowPart(lo, min(part.upto_seq, lo + span)),
                                         window, chunk)
                return
            sql, _ = window_sql(index, parts, source_ids, above_seq=True)
            cursor = (window.ts_from, 0)
            while True:
                rows = conn.execute(sql, (*cursor, window.ts_to, part.upto_seq,
                                          part.after_seq, *(source_ids or ()),
                                          chunk)).fetchall()
                if not rows:
                    return
                yield [(seq, body) for _ts, seq, body in rows]
                cursor = (rows[-1][0], rows[-1][1])
