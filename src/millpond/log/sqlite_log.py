"""The embedded log: one SQLite database in WAL mode, written by a single group-commit thread.

Why one writer thread: SQLite allows one writer at a time, so instead of many request
handlers fighting for the write lock, they queue their events and a single thread
commits everything that is waiting in one transaction (group commit). A request is
acknowledged only when the transaction holding its events has committed, and with
``synchronous=FULL`` that means the WAL has been fsynced. The queue is bounded: when
the disk cannot keep up, :class:`Overloaded` tells the collector to answer 503 with
``Retry-After`` instead of letting memory grow. Such an *overload episode* is logged
twice, never once per refused request: a warning at its first refusal, and a line with
how many were refused once the writer has worked the queue down to half its bound.

Checkpoints (copying the WAL back into the database file, with its own fsync) run on a
second connection in a checkpointer thread, so a large group's checkpoint overlaps the
next group's inserts instead of delaying its commit; SQLite lets a passive checkpoint
run beside the writer. The writer still checkpoints by itself if the WAL grows far past
that (``_WRITER_CHECKPOINT_PAGES``), so the WAL stays bounded even if the thread lags.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path

from millpond.errors import Overloaded
from millpond.log.base import (
    AppendResult,
    EventLog,
    EventQuery,
    NewEvent,
    NewRejection,
    WindowPart,
)
from millpond.log.dedupe import dedupe_hash

log = logging.getLogger("millpond.log")

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    source_id TEXT NOT NULL,
    type TEXT NOT NULL,
    event TEXT,
    user_id TEXT,
    anonymous_id TEXT,
    message_id TEXT NOT NULL,
    ts INTEGER NOT NULL,
    received INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_ts ON events(ts);
CREATE TABLE IF NOT EXISTS dedupe (h INTEGER PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dedupe_overflow (
    source_id TEXT NOT NULL, message_id TEXT NOT NULL, PRIMARY KEY (source_id, message_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rejections (
    id INTEGER PRIMARY KEY,
    source_id TEXT NOT NULL,
    received INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    code TEXT NOT NULL,
    reason TEXT NOT NULL,
    field TEXT,
    body BLOB NOT NULL
);
"""

_INSERT_EVENT = (
    "INSERT INTO events (seq, source_id, type, event, user_id, anonymous_id, message_id, ts,"
    " received, body) VALUES (?,?,?,?,?,?,?,?,?,?)"
)
_INSERT_REJECTION = (
    "INSERT INTO rejections (source_id, received, idx, code, reason, field, body)"
    " VALUES (?,?,?,?,?,?,?)"
)
_LOOKUP_CHUNK = 500
#: A window holding at least 1/DENSE_FRACTION of a seq range is read in seq order.
DENSE_FRACTION = 4
#: WAL bytes (event bodies, roughly) committed before the checkpointer is woken: about
#: SQLite's own default of 1000 pages, so small commits do not each cost a checkpoint.
_CHECKPOINT_BYTES = 4 * 1024 * 1024
#: The least time between two checkpoints. A bulk load rewrites the same index pages in
#: every commit; a checkpoint copies each page once however many commits wrote it, so
#: checkpointing once a second instead of after each commit copies far less.
_CHECKPOINT_INTERVAL = 1.0
#: The writer's own ``wal_autocheckpoint``: a fallback far above what the thread allows.
_WRITER_CHECKPOINT_PAGES = 32_768


def with_seq(seq: int, body: bytes) -> bytes:
    """Splice ``seq`` into a stored body without decoding it (bodies are stored seq-less)."""
    return b'{"seq":%d,%s' % (seq, body[1:])


class _Submission:
    """Events waiting for a commit, and who to tell: a thread's Future or an event loop's."""

    __slots__ = ("events", "rejections", "future", "loop", "aio_future")

    def __init__(self, events: list[NewEvent], rejections: list[NewRejection],
                 loop: asyncio.AbstractEventLoop | None = None):
        self.events = events
        self.rejections = rejections
        self.loop = loop
        self.future: Future[AppendResult] | None = None if loop else Future()
        self.aio_future: asyncio.Future | None = loop.create_future() if loop else None


class SQLiteEventLog(EventLog):
    """:class:`EventLog` on SQLite WAL; see the module docstring for the write path."""

    def __init__(self, path: str | Path, *, synchronous: str = "FULL",
                 max_pending: int = 200_000, max_group: int = 20_000,
                 on_commit: Callable[[int, float], None] | None = None,
                 read_only: bool = False):
        self.path = str(path)
        self._read_only = read_only
        self._synchronous = synchronous
        self._max_pending = max_pending
        self._max_group = max_group
        self._on_commit = on_commit
        self._queue: deque[_Submission] = deque()
        self._cv = threading.Condition()
        self._pending = 0
        self._closing = False
        self._released = False
        self._local = threading.local()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []
        self._waiters_lock = threading.Lock()
        #: The current overload episode: submissions refused so far, and since when.
        self._refused = 0
        self._refused_since = 0.0
        if read_only:  # another process's view: no writer, no schema changes
            self._writer = None
            self._last_seq = self._reader().execute(
                "SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
            return
        conn = self._connect()
        conn.executescript(SCHEMA)
        conn.commit()
        self._last_seq = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
        self._writer = threading.Thread(target=self._run, name="millpond-log-writer", daemon=True)
        self._writer.start()
        self._checkpoint_due = threading.Event()
        self._checkpoint_stop = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop,
                                              name="millpond-log-checkpointer", daemon=True)
        self._checkpointer.start()

    @classmethod
    def open_reader(cls, path: str) -> SQLiteEventLog:
        """This log opened read-only (for worker processes: WAL lets them read while the
        server writes)."""
        return cls(path, read_only=True)

    def reader_factory(self) -> Callable[[], EventLog]:
        return functools.partial(SQLiteEventLog.open_reader, self.path)

    # -- connections -----------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA cache_size=-65536")
        conn.execute("PRAGMA temp_store=MEMORY")
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only=1")
            self._local.conn = conn
        return conn

    # -- writing ---------------------------------------------------------------------
    def _submit(self, events: list[NewEvent], rejections: list[NewRejection],
                loop: asyncio.AbstractEventLoop | None = None) -> _Submission:
        sub = _Submission(events, rejections, loop)
        size = len(events) + len(rejections)
        with self._cv:
            if self._read_only:
                raise RuntimeError("this log was opened read-only")
            if self._closing:
                raise Overloaded("the server is shutting down", retry_after=2)
            behind = self._pending
            if not behind or behind + size <= self._max_pending:
                self._pending += size
                self._queue.append(sub)
                self._cv.notify()
                return sub
            self._refused += 1
            first = self._refused == 1
            if first:
                self._refused_since = time.monotonic()
        if first:  # logged outside the lock: the writer must not wait for stderr
            log.warning("log writer is behind (%s events queued): answering 503 with "
                        "Retry-After until it catches up", f"{behind:,}",
                        extra={"phase": "overloaded", "events_queued": behind,
                               "max_pending": self._max_pending})
        raise Overloaded(f"the log is {behind} events behind; retry shortly", retry_after=1)

    def _end_overload(self) -> tuple[int, float] | None:
        """Close the overload episode once the queue is down to half its bound (called
        with ``_cv`` held): ``(refused, seconds)``, or None if none is due."""
        if not self._refused or self._pending > self._max_pending // 2:
            return None
        refused, self._refused = self._refused, 0
        return refused, time.monotonic() - self._refused_since

    @staticmethod
    def _log_overload_end(ended: tuple[int, float] | None) -> None:
        if ended is not None:
            refused, seconds = ended
            log.warning("log writer caught up after %.1f s; %s writes were refused with 503 "
                     "meanwhile", seconds, f"{refused:,}",
                     extra={"phase": "caught_up", "refused": refused,
                            "seconds": round(seconds, 3)})

    async def append(self, events, rejections=()) -> AppendResult:
        sub = self._submit(events, list(rejections), asyncio.get_running_loop())
        return await sub.aio_future

    def append_sync(self, events, rejections=()) -> AppendResult:
        return self._submit(events, list(rejections)).future.result()

    def submit(self, events, rejections=()) -> Future[AppendResult]:
        """The commit's future (see :meth:`EventLog.submit`); submissions commit in order."""
        return self._submit(events, list(rejections)).future

    def _run(self) -> None:
        conn = self._connect()
        conn.execute(f"PRAGMA wal_autocheckpoint={_WRITER_CHECKPOINT_PAGES}")
        unchecked = 0  # body bytes committed since the checkpointer was last woken
        while True:
            with self._cv:
                while not self._queue and not self._closing:
                    self._cv.wait()
                if not self._queue:
                    break
                subs: list[_Submission] = []
                size = 0
                while self._queue and size < self._max_group:
                    sub = self._queue.popleft()
                    subs.append(sub)
                    size += len(sub.events) + len(sub.rejections)
            started = time.perf_counter()
            try:
                results = self._commit(conn, subs)
            except Exception as exc:  # noqa: BLE001 - every waiter must hear about it
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                _settle(subs, [exc] * len(subs))
            else:
                elapsed = time.perf_counter() - started
                _settle(subs, results)
                if self._on_commit is not None:
                    self._on_commit(sum(len(sub.events) for sub in subs), elapsed)
                self._wake_waiters()
                unchecked += sum(len(e.body) for sub in subs for e in sub.events)
                if unchecked >= _CHECKPOINT_BYTES:
                    unchecked = 0
                    self._checkpoint_due.set()
            with self._cv:
                self._pending -= size
                ended = self._end_overload()
            self._log_overload_end(ended)
        conn.close()

    def _checkpoint_loop(self) -> None:
        """Passive checkpoints on demand: they never block the writer, nor it them."""
        conn = self._connect()
        stop = self._checkpoint_stop
        while True:
            self._checkpoint_due.wait()
            self._checkpoint_due.clear()
            if stop.is_set():
                break
            with contextlib.suppress(sqlite3.Error):  # busy or failed: the next one catches up
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            if stop.wait(_CHECKPOINT_INTERVAL):
                break
        conn.close()

    def _commit(self, conn: sqlite3.Connection, subs: list[_Submission]) -> list[AppendResult]:
        hashes = [[dedupe_hash(e.source_id, e.message_id) if e.dedupe_key is None
                   else e.dedupe_key for e in s.events] for s in subs]
        flat = [h for hs in hashes for h in hs]
        conn.execute("BEGIN IMMEDIATE")
        # Optimistic path: claim every hash at once. If all were new (the common case) the
        # claim is already the dedupe insert; otherwise undo it and confirm each hit.
        before = conn.total_changes
        conn.executemany("INSERT OR IGNORE INTO dedupe (h, seq) VALUES (?, ?)",
                         zip(flat, range(self._last_seq + 1, self._last_seq + 1 + len(flat)),
                             strict=True))
        if conn.total_changes - before == len(flat):
            rows, overflow, results, seq = self._plan_new(subs)
        else:
            conn.execute("ROLLBACK")
            conn.execute("BEGIN IMMEDIATE")
            known: dict[int, int] = {}
            for i in range(0, len(flat), _LOOKUP_CHUNK):
                chunk = flat[i:i + _LOOKUP_CHUNK]
                marks = ",".join("?" * len(chunk))
                known.update(conn.execute(
                    f"SELECT h, seq FROM dedupe WHERE h IN ({marks})", chunk).fetchall())
            rows, dedupe_rows, overflow, results, seq = self._plan_with_hits(
                conn, subs, hashes, known)
            conn.executemany("INSERT INTO dedupe (h, seq) VALUES (?, ?)", dedupe_rows)
        conn.executemany(_INSERT_EVENT, rows)
        if overflow:
            conn.executemany("INSERT INTO dedupe_overflow VALUES (?, ?)", overflow)
        rejections = [(r.source_id, r.received_ms, r.index, r.code, r.reason, r.field, r.body)
                      for s in subs for r in s.rejections]
        if rejections:
            conn.executemany(_INSERT_REJECTION, rejections)
        conn.execute("COMMIT")
        self._last_seq = seq
        return results

    def _plan_new(self, subs: list[_Submission]):
        """The common case: no messageId seen before, so every event gets the next seq."""
        first = self._last_seq + 1
        events = [e for sub in subs for e in sub.events]
        rows = [(first + i, e.source_id, e.type, e.event_name, e.user_id, e.anonymous_id,
                 e.message_id, e.ts_ms, e.received_ms, e.body) for i, e in enumerate(events)]
        results = []
        seq = first
        for sub in subs:
            results.append(AppendResult(list(range(seq, seq + len(sub.events)))))
            seq += len(sub.events)
        return rows, [], results, first + len(events) - 1

    def _plan_with_hits(self, conn: sqlite3.Connection, subs: list[_Submission],
                        hashes: list[list[int]], known: dict[int, int]):
        """Some hashes were seen before (or twice in this group): confirm each hit."""
        seq = self._last_seq
        rows: list[tuple] = []
        dedupe_rows: list[tuple[int, int]] = []
        overflow: list[tuple[str, str]] = []
        in_group: dict[int, NewEvent] = {}
        results: list[AppendResult] = []
        for sub, sub_hashes in zip(subs, hashes, strict=True):
            seqs: list[int | None] = []
            for ev, h in zip(sub.events, sub_hashes, strict=True):
                if (h in known or h in in_group) and self._is_duplicate(conn, ev, h, known,
                                                                        in_group, overflow):
                    seqs.append(None)
                    continue
                seq += 1
                if h in known or h in in_group:
                    overflow.append((ev.source_id, ev.message_id))
                else:
                    dedupe_rows.append((h, seq))
                    in_group[h] = ev
                rows.append((seq, ev.source_id, ev.type, ev.event_name, ev.user_id,
                             ev.anonymous_id, ev.message_id, ev.ts_ms, ev.received_ms, ev.body))
                seqs.append(seq)
            results.append(AppendResult(seqs))
        return rows, dedupe_rows, overflow, results, seq

    @staticmethod
    def _is_duplicate(conn: sqlite3.Connection, ev: NewEvent, h: int, known: dict[int, int],
                      in_group: dict[int, NewEvent], overflow: list[tuple[str, str]]) -> bool:
        """Confirm a hash hit against the real (source, messageId) before dropping anything."""
        key = (ev.source_id, ev.message_id)
        if key in overflow:
            return True
        twin = in_group.get(h)
        if twin is not None and (twin.source_id, twin.message_id) == key:
            return True
        if h in known:
            row = conn.execute("SELECT source_id, message_id FROM events WHERE seq = ?",
                               (known[h],)).fetchone()
            if row is not None and tuple(row) == key:
                return True
        return conn.execute(
            "SELECT 1 FROM dedupe_overflow WHERE source_id = ? AND message_id = ?", key
        ).fetchone() is not None

    # -- waiting for new events ------------------------------------------------------
    def _wake_waiters(self) -> None:
        with self._waiters_lock:
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_resolve, fut)

    def release_waiters(self) -> None:
        """The server is stopping: long polls return now instead of holding up shutdown."""
        self._released = True
        self._wake_waiters()

    async def wait_for(self, after_seq: int, timeout: float) -> int:
        if self._last_seq > after_seq or self._released:
            return self._last_seq
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._waiters_lock:
            self._waiters.append((loop, fut))
        if self._last_seq > after_seq:  # committed between the check and the registration
            return self._last_seq
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            # don't let idle pollers pile up until the next commit
            with self._waiters_lock, contextlib.suppress(ValueError):
                self._waiters.remove((loop, fut))
        return self._last_seq

    # -- reading ---------------------------------------------------------------------
    def last_seq(self) -> int:
        return self._last_seq

    def read_after(self, after_seq: int, limit: int) -> list[tuple[int, bytes]]:
        return self._reader().execute(
            "SELECT seq, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit)).fetchall()

    def find_message(self, source_id: str, message_id: str) -> bytes | None:
        conn = self._reader()
        row = conn.execute("SELECT seq FROM dedupe WHERE h = ?",
                           (dedupe_hash(source_id, message_id),)).fetchone()
        candidates = [row[0]] if row else []
        if conn.execute("SELECT 1 FROM dedupe_overflow WHERE source_id = ? AND message_id = ?",
                        (source_id, message_id)).fetchone():
            # A hash collision stored it outside the dedupe table (rare): search by text.
            candidates += [r[0] for r in conn.execute(
                "SELECT seq FROM events WHERE source_id = ? AND message_id = ?",
                (source_id, message_id))]
        for seq in candidates:
            found = conn.execute("SELECT source_id, message_id, body FROM events WHERE seq = ?",
                                 (seq,)).fetchone()
            if found and found[0] == source_id and found[1] == message_id:
                return with_seq(seq, found[2])
        return None

    def read_range(self, after_seq: int, until_seq: int,
                   types: tuple[str, ...]) -> list[tuple[int, bytes]]:
        marks = ",".join("?" * len(types))
        return self._reader().execute(
            f"SELECT seq, body FROM events WHERE seq > ? AND seq <= ? AND type IN ({marks})"
            " ORDER BY seq", (after_seq, until_seq, *types)).fetchall()

    def query(self, q: EventQuery) -> list[bytes]:
        where: list[str] = []
        args: list = []

        def add(clause: str, *values) -> None:
            where.append(clause)
            args.extend(values)

        if q.source_ids:
            add(f"source_id IN ({','.join('?' * len(q.source_ids))})", *q.source_ids)
        if q.types:
            add(f"type IN ({','.join('?' * len(q.types))})", *q.types)
        if q.event_name is not None:
            add("event = ?", q.event_name)
        if q.user_id is not None:
            add("user_id = ?", q.user_id)
        if q.person_ids:
            marks = ",".join("?" * len(q.person_ids))
            add(f"(user_id IN ({marks}) OR anonymous_id IN ({marks}))", *q.person_ids,
                *q.person_ids)
        for column, op, value in (("ts", ">=", q.ts_from), ("ts", "<", q.ts_to),
                                  ("received", ">=", q.received_from),
                                  ("received", "<", q.received_to),
                                  ("seq", ">", q.after_seq), ("seq", "<", q.before_seq)):
            if value is not None:
                add(f"{column} {op} ?", value)
        sql = "SELECT seq, body FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY seq {'DESC' if q.descending else 'ASC'} LIMIT ?"
        args.append(q.limit)
        return [with_seq(seq, body) for seq, body in self._reader().execute(sql, args)]

    def scan_window(self, ts_from: int, ts_to: int, max_seq: int | None,
                    batch: int = 5000, *, source_ids: tuple[str, ...] | None = None,
                    after: tuple[int, int] | None = None,
                    ) -> Iterator[list[tuple[int, int, bytes]]]:
        cursor = _window_start(ts_from, after)
        sql, extra = _window_sql(source_ids)
        limit_seq = max_seq if max_seq is not None else (1 << 62)
        conn = self._reader()
        while True:
            rows = conn.execute(sql, (cursor[0], cursor[1], ts_to, limit_seq, *extra,
                                      batch)).fetchall()
            if not rows:
                return
            yield rows
            cursor = (rows[-1][0], rows[-1][1])

    def count_window(self, ts_from: int, ts_to: int, max_seq: int | None, *,
                     source_ids: tuple[str, ...] | None = None) -> int:
        sql = "SELECT COUNT(*) FROM events WHERE ts >= ? AND ts < ? AND seq <= ?"
        if source_ids is not None:
            sql += f" AND source_id IN ({','.join('?' * len(source_ids))})"
        limit_seq = max_seq if max_seq is not None else (1 << 62)
        return self._reader().execute(sql, (ts_from, ts_to, limit_seq,
                                            *(source_ids or ()))).fetchone()[0]

    def window_parts(self, ts_from: int, ts_to: int, max_seq: int | None, *,
                     max_parts: int = 1, min_events: int = 1) -> list[WindowPart]:
        # Counting walks only the (ts) index, which holds the rowid: no table reads.
        upto = self._last_seq if max_seq is None else min(max_seq, self._last_seq)
        size = self._reader().execute(
            "SELECT COUNT(*) FROM events INDEXED BY events_ts WHERE ts >= ? AND ts < ?"
            " AND seq <= ?", (ts_from, ts_to, upto)).fetchone()[0]
        # seqs are dense (every stored event takes the next one), so ``upto`` is about the
        # number of rows the range holds
        dense = size * DENSE_FRACTION >= upto
        parts = max(1, min(max_parts, size // max(1, min_events)))
        bounds = [upto * i // parts for i in range(parts + 1)]
        return [WindowPart(lo, hi, dense) for lo, hi in zip(bounds, bounds[1:], strict=False)]

    def scan_part(self, part: WindowPart, ts_from: int, ts_to: int, batch: int = 5000, *,
                  source_ids: tuple[str, ...] | None = None,
                  ) -> Iterator[list[tuple[int, bytes]]]:
        sources = ""
        if source_ids is not None:
            sources = f" AND source_id IN ({','.join('?' * len(source_ids))})"
        conn = self._reader()
        if part.dense:
            # ``+ts`` keeps SQLite off the time index: rows are read in rowid order, which
            # is sequential on disk.
            sql = ("SELECT seq, body FROM events WHERE seq > ? AND seq <= ? AND +ts >= ?"
                   f" AND +ts < ?{sources} ORDER BY seq LIMIT ?")
            after = part.after_seq
            while True:
                rows = conn.execute(sql, (after, part.upto_seq, ts_from, ts_to,
                                          *(source_ids or ()), batch)).fetchall()
                if not rows:
                    return
                yield rows
                after = rows[-1][0]
        sql = ("SELECT ts, seq, body FROM events INDEXED BY events_ts WHERE (ts, seq) > (?, ?)"
               f" AND ts < ? AND seq > ? AND seq <= ?{sources} ORDER BY ts, seq LIMIT ?")
        cursor = (ts_from, 0)
        while True:
            rows = conn.execute(sql, (*cursor, ts_to, part.after_seq, part.upto_seq,
                                      *(source_ids or ()), batch)).fetchall()
            if not rows:
                return
            yield [(seq, body) for _ts, seq, body in rows]
            cursor = (rows[-1][0], rows[-1][1])

    def window_chunk(self, ts_from: int, ts_to: int, max_seq: int | None, limit: int, *,
                     source_ids: tuple[str, ...] | None = None,
                     after: tuple[int, int] | None = None) -> list[tuple[int, int, bytes]]:
        """One chunk of ``scan_window``, built by SQLite in a single step.

        Why: ``fetchall`` takes the GIL back for every row, so a reader thread beside a
        busy event loop (a replay evaluating the previous chunk) waits a switch interval
        per row and the read ahead barely moves. Here SQLite concatenates the chunk's
        (ts, seq, length) index and its bodies inside one ``sqlite3_step``, which runs
        without the GIL, and Python only slices the result.
        """
        cursor = _window_start(ts_from, after)
        inner, extra = _window_sql(source_ids)
        limit_seq = max_seq if max_seq is not None else (1 << 62)
        index, blob = self._reader().execute(_PACKED.format(inner=inner), (
            cursor[0], cursor[1], ts_to, limit_seq, *extra, limit)).fetchone()
        if index is None:
            return []
        rows = []
        end = 0
        for ts, seq, size in _unpack_index(bytes.fromhex(index)):
            start, end = end, end + size
            rows.append((ts, seq, blob[start:end]))
        if end != len(blob):
            raise RuntimeError(f"window chunk of {len(blob)} bytes, index says {end}")
        # group_concat follows the inner ORDER BY in practice, but SQLite does not promise
        # it; sorting a sorted list is one pass ((ts, seq) is unique: bodies never compare).
        rows.sort()
        return rows

    def rejections(self, source_id: str | None, after_id: int | None, limit: int) -> list[dict]:
        sql = ("SELECT id, source_id, received, idx, code, reason, field, body FROM rejections"
               " WHERE id > ?")
        args: list = [after_id or 0]
        if source_id:
            sql += " AND source_id = ?"
            args.append(source_id)
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)
        keys = ("id", "source_id", "received_ms", "index", "code", "reason", "field", "body")
        return [dict(zip(keys, row, strict=True)) for row in self._reader().execute(sql, args)]

    def count(self) -> int:
        return self._reader().execute("SELECT COUNT(*) FROM events").fetchone()[0]

    def close(self) -> None:
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        if self._writer is not None:
            self._writer.join()
            with self._cv:  # the writer drained the queue: an episode still open ends
                ended = self._end_overload()
            self._log_overload_end(ended)
            self._checkpoint_stop.set()
            self._checkpoint_due.set()
            self._checkpointer.join()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()


def _window_start(ts_from: int, after: tuple[int, int] | None) -> tuple[int, int]:
    """The (ts, seq) a window scan starts strictly after."""
    if after is None:
        return (ts_from, 0)
    return (max(ts_from, after[0]), after[1] if after[0] >= ts_from else 0)


def _window_sql(source_ids: tuple[str, ...] | None) -> tuple[str, tuple]:
    """The window query (params: cursor ts, cursor seq, ts_to, max seq, *sources, limit)."""
    # A row value lets SQLite seek straight to the cursor in the (ts, rowid) index
    # instead of re-reading every row that shares the cursor's timestamp.
    sql = "SELECT ts, seq, body FROM events WHERE (ts, seq) > (?, ?) AND ts < ? AND seq <= ?"
    extra: tuple = ()
    if source_ids is not None:
        sql += f" AND source_id IN ({','.join('?' * len(source_ids))})"
        extra = tuple(source_ids)
    return sql + " ORDER BY ts, seq LIMIT ?", extra


#: One window chunk as one row: a hex index of (ts, seq, body length) per event (8, 8
#: and 4 bytes, big-endian; printf's %x writes a negative ts in two's complement) and
#: the bodies back to back. CAST makes both sides count bytes, whatever a body's type.
_PACKED = ("SELECT group_concat(printf('%016x%016x%08x', ts, seq,"
           " length(CAST(body AS BLOB))), ''),"
           " CAST(group_concat(CAST(body AS BLOB), '') AS BLOB) FROM ({inner})")
_unpack_index = struct.Struct(">qqI").iter_unpack


def _settle(subs: list[_Submission], outcomes: list) -> None:
    """Tell every waiter of a commit group, with one wake-up per event loop.

    Why batch the wake-ups: ``call_soon_threadsafe`` writes to the loop's self-pipe, and
    doing that once per request costs more than the request's share of the commit.
    """
    per_loop: dict[asyncio.AbstractEventLoop, list] = {}
    for sub, outcome in zip(subs, outcomes, strict=True):
        if sub.loop is None:
            if isinstance(outcome, BaseException):
                sub.future.set_exception(outcome)
            else:
                sub.future.set_result(outcome)
        else:
            per_loop.setdefault(sub.loop, []).append((sub.aio_future, outcome))
    for loop, pairs in per_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop has nobody waiting
            loop.call_soon_threadsafe(_settle_in_loop, pairs)


def _settle_in_loop(pairs: list) -> None:
    for fut, outcome in pairs:
        if fut.done():
            continue
        if isinstance(outcome, BaseException):
            fut.set_exception(outcome)
        else:
            fut.set_result(outcome)


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)
