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

Reads run in worker threads (a read is a fast indexed range scan, but it must never stall
the event loop the collector shares), on read-only connections lent from a few spares:
whichever thread reads next finds a warm page cache, and the number of caches stays
bounded however many threads read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Generator, Sequence
from concurrent.futures import Future
from itertools import starmap
from pathlib import Path
from typing import Any, cast

from millpond.errors import Overloaded
from millpond.storage import whole_log
from millpond.storage.archive.place import Place
from millpond.storage.contracts import StorageUnavailable
from millpond.storage.health import StorageHealth
from millpond.storage.models import AppendResult, Expired, Expiry, NewEvent, StoredEvent, Window
from millpond.storage.sqlite import dedupe, high_water, retention, time_index
from millpond.storage.sqlite.archive import SQLiteArchive
from millpond.storage.sqlite.connection import connect, immediate
from millpond.storage.sqlite.key_filter import FilterKeeper

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
""" + dedupe.SCHEMA + retention.SCHEMA + high_water.SCHEMA

_INSERT_EVENT = (
    "INSERT INTO events (seq, source_id, type, event, user_id, anonymous_id, message_id, ts,"
    " received, body) VALUES (?,?,?,?,?,?,?,?,?,?)"
)
#: Page cache per read connection, KiB (lent readers: queries, scans, replays).
CACHE_KIB = 65536
#: The group-commit writer's page cache, KiB. Why smaller than a reader's: what it
#: touches most is pages it appends (event bodies, written once and never read back by
#: it), which crowd a large cache as they stream through it; the pages it reads again
#: (the interior pages of the indexes and dedupe tables) fit in a few MiB, and a page it
#: misses is read from the OS's file cache, not the disk. A 64 MiB cache filled within
#: the first 300,000 imported events and stayed full: RSS for nothing (bench/import.py).
WRITER_CACHE_KIB = 16384
#: The maintenance connection's page cache, KiB (archive sealing, retention). Its work
#: walks a range once: deleting a sealed range (``secure_delete`` overwrites each page)
#: touches each of its pages once, so a large cache would only keep up to that many
#: MiB of pages it never reads again; it did, 64 MiB from the first seal on.
MAINTENANCE_CACHE_KIB = 2048
#: WAL bytes (event bodies, roughly) committed before the checkpointer is woken: about
#: SQLite's own default of 1000 pages, so small commits do not each cost a checkpoint.
_CHECKPOINT_BYTES = 4 * 1024 * 1024
#: The least time between two checkpoints. A bulk load rewrites the same index pages in
#: every commit; a checkpoint copies each page once however many commits wrote it, so
#: checkpointing once a second instead of after each commit copies far less.
_CHECKPOINT_INTERVAL = 1.0
#: The writer's own ``wal_autocheckpoint``: a fallback far above what the thread allows.
_WRITER_CHECKPOINT_PAGES = 32_768
#: Read connections kept between reads (see :meth:`SQLiteEventLog.lend_reader`).
SPARE_READERS = 4


#: A commit's outcome for one submission: its result, or the error every waiter hears.
Outcome = AppendResult | BaseException


class _Submission:
    """Events waiting for a commit, and who to tell: a thread's Future or an event loop's
    (exactly one of ``future`` and ``aio_future`` is set: ``aio_future`` when ``loop`` is)."""

    __slots__ = ("events", "future", "loop", "aio_future")

    def __init__(self, events: Sequence[NewEvent], loop: asyncio.AbstractEventLoop | None = None):
        self.events = events
        self.loop = loop
        self.future: Future[AppendResult] | None = None if loop else Future()
        self.aio_future: asyncio.Future[AppendResult] | None = (loop.create_future() if loop
                                                                else None)


class SQLiteEventLog:
    """:class:`~millpond.storage.contracts.EventLog` on SQLite WAL; see the module
    docstring for the write path."""

    def __init__(self, path: str | Path, *, synchronous: str = "FULL",
                 max_pending: int = 200_000, max_group: int = 20_000,
                 on_commit: Callable[[int, float], None] | None = None,
                 health: StorageHealth | None = None,
                 part_seqs: int = time_index.DEFAULT_PART_SEQS):
        self.path = str(path)
        #: Hears of refused and committed writes (see ``millpond.storage.health``).
        self.health = health or StorageHealth()
        self._synchronous = synchronous
        self._max_pending = max_pending
        self._max_group = max_group
        self._on_commit = on_commit
        self._queue: deque[_Submission] = deque()
        self._cv = threading.Condition()
        self._pending = 0
        self._closing = False
        self._closed = False
        self._released = False
        self._spare: list[sqlite3.Connection] = []
        self._spare_lock = threading.Lock()
        self._expiry_conn: sqlite3.Connection | None = None
        self._expiry_lock = threading.Lock()
        #: The archive tier (``storage/sqlite/archive.py``), when the storage opened one.
        self.archive: SQLiteArchive | None = None
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._waiters_lock = threading.Lock()
        #: The current overload episode: submissions refused so far, and since when.
        self._refused = 0
        self._refused_since = 0.0
        conn = self._connect()
        conn.executescript(SCHEMA)
        #: The time index and its part size (``part_seqs`` for a new log, else its own).
        self.time_index = time_index.ensure(conn, part_seqs)
        self._last_seq: int = high_water.last_seq(conn)
        conn.close()
        self._writer = threading.Thread(target=self._run, name="millpond-log-writer", daemon=True)
        self._writer.start()
        self._checkpoint_due = threading.Event()
        self._checkpoint_stop = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop,
                                              name="millpond-log-checkpointer", daemon=True)
        self._checkpointer.start()

    # -- connections -----------------------------------------------------------------
    def _connect(self, *, health: bool = True,
                 cache_kib: int = CACHE_KIB) -> sqlite3.Connection:
        return connect(self.path, self._synchronous, cache_kib=cache_kib,
                       health=self.health if health else None)

    @contextlib.contextmanager
    def reading(self) -> Generator[sqlite3.Connection]:
        """A read-only connection for the block (the index reads through it too)."""
        conn = self.lend_reader()
        try:
            yield conn
        finally:
            self.return_reader(conn)

    def lend_reader(self) -> sqlite3.Connection:
        """A read-only connection, given back with :meth:`return_reader` (a window scan
        keeps one for its whole run). Why lent rather than one per thread: threads come
        and go (worker pools, a scan's reader thread), and a connection of their own
        would start with a cold page cache and grow one more cache (up to ``CACHE_KIB``)
        each."""
        with self._spare_lock:
            if self._spare:
                return self._spare.pop()
        conn = self._connect()
        conn.execute("PRAGMA query_only=1")
        return conn

    def return_reader(self, conn: sqlite3.Connection) -> None:
        with self._spare_lock:
            if not self._closed and len(self._spare) < SPARE_READERS:
                self._spare.append(conn)
                return
        conn.close()

    # -- writing ---------------------------------------------------------------------
    def _submit(self, events: Sequence[NewEvent],
                loop: asyncio.AbstractEventLoop | None = None) -> _Submission:
        sub = _Submission(events, loop)
        size = len(events)
        with self._cv:
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

    async def append(self, events: Sequence[NewEvent]) -> AppendResult:
        sub = self._submit(events, asyncio.get_running_loop())
        return await cast("asyncio.Future[AppendResult]", sub.aio_future)  # given a loop

    def submit(self, events: Sequence[NewEvent]) -> Future[AppendResult]:
        """The commit's future (see the contract); submissions commit in order."""
        return cast("Future[AppendResult]", self._submit(events).future)  # no loop: set

    def dedupe_keyer(self) -> Callable[[str, str], int]:
        return dedupe.dedupe_hash

    def _run(self) -> None:
        conn = self._connect(cache_kib=WRITER_CACHE_KIB)
        conn.execute(f"PRAGMA wal_autocheckpoint={_WRITER_CHECKPOINT_PAGES}")
        keys = conn.dedupe_filter = FilterKeeper(  # type: ignore[attr-defined]
            lambda: self._connect(health=False))
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
                    size += len(sub.events)
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
                    self._on_commit(size, elapsed)
                self._wake_waiters()
                unchecked += sum(len(e.body) for sub in subs for e in sub.events)
                if unchecked >= _CHECKPOINT_BYTES:
                    unchecked = 0
                    self._checkpoint_due.set()
            with self._cv:
                self._pending -= size
                ended = self._end_overload()
            self._log_overload_end(ended)
        keys.close()
        conn.close()

    def _checkpoint_loop(self) -> None:
        """Passive checkpoints on demand: they never block the writer, nor it them. A
        failed one is not an unavailable episode: no write was refused."""
        conn = self._connect(health=False)
        stop = self._checkpoint_stop
        while True:
            self._checkpoint_due.wait()
            self._checkpoint_due.clear()
            if stop.is_set():
                break
            with contextlib.suppress(sqlite3.Error, StorageUnavailable):  # the next one catches up
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            if stop.wait(_CHECKPOINT_INTERVAL):
                break
        conn.close()

    def _commit(self, conn: sqlite3.Connection, subs: list[_Submission]) -> list[AppendResult]:
        with immediate(conn):  # plan_group may restart it: the commit is of the last one
            archive = self.archive
            rows, results, seq = dedupe.plan_group(conn, [s.events for s in subs],
                                                   self._last_seq,
                                                   archive.key_of if archive else None)
            conn.executemany(_INSERT_EVENT, rows)
        self._last_seq = seq
        return results

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

    async def wait(self, after_seq: int, timeout: float) -> int:
        if self._last_seq > after_seq or self._released:
            return self._last_seq
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._waiters_lock:
            self._waiters.append((loop, fut))
        if self._last_seq > after_seq or self._released:  # changed before registration
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

    async def read(self, after_seq: int, limit: int, *, upto_seq: int | None = None,
                   types: frozenset[str] | None = None) -> list[StoredEvent]:
        return await asyncio.to_thread(self.read_sync, after_seq, limit, upto_seq, types)

    def read_sync(self, after_seq: int, limit: int, upto_seq: int | None = None,
                  types: frozenset[str] | None = None) -> list[StoredEvent]:
        """:meth:`read`, blocking (for this backend's own threads): the archive's part
        first, then the hot store's, read again if a range was archived meanwhile."""
        while True:
            archive = self.archive
            upto = archive.archived_upto() if archive is not None else 0
            out: list[StoredEvent] = []
            if archive is not None and after_seq < upto:
                out = archive.read(after_seq, limit, upto_seq, types)
            if len(out) < limit:
                out += self._read_hot(max(after_seq, upto), limit - len(out), upto_seq, types)
            if archive is None or archive.archived_upto() == upto:
                return out

    def _read_hot(self, after_seq: int, limit: int, upto_seq: int | None,
                  types: frozenset[str] | None) -> list[StoredEvent]:
        sql = "SELECT seq, ts, body FROM events WHERE seq > ?"
        args: list[Any] = [after_seq]
        if upto_seq is not None:
            sql += " AND seq <= ?"
            args.append(upto_seq)
        if types is not None:
            sql += f" AND type IN ({','.join('?' * len(types))})"
            args.extend(sorted(types))
        args.append(limit)
        # starmap builds the records in C: a third cheaper than a comprehension
        with self.reading() as conn:
            return list(starmap(StoredEvent, conn.execute(
                sql + " ORDER BY seq LIMIT ?", args).fetchall()))

    def read_all(self, upto_seq: int, chunk: int = 20_000) -> AsyncIterator[list[StoredEvent]]:
        return whole_log.read_all(self.archive, self, upto_seq, chunk)

    async def get(self, seq: int) -> StoredEvent | None:
        return await asyncio.to_thread(self._get, seq)

    def _get(self, seq: int) -> StoredEvent | None:
        with self.reading() as conn:
            row = conn.execute("SELECT seq, ts, body FROM events WHERE seq = ?",
                               (seq,)).fetchone()
        if row is None and self.archive is not None:
            return self.archive.get(seq)  # archived (checked after the hot store: no gap)
        return None if row is None else StoredEvent(*row)

    async def find(self, source_id: str, message_id: str) -> StoredEvent | None:
        return await asyncio.to_thread(self._find, source_id, message_id)

    def _find(self, source_id: str, message_id: str) -> StoredEvent | None:
        with self.reading() as conn:
            for seq in dedupe.candidate_seqs(conn, source_id, message_id):
                found = conn.execute("SELECT source_id, message_id, ts, body FROM events"
                                     " WHERE seq = ?", (seq,)).fetchone()
                if found and found[0] == source_id and found[1] == message_id:
                    return StoredEvent(seq, found[2], found[3])
                if found is None and self.archive is not None \
                        and self.archive.key_of(seq) == (source_id, message_id):
                    return self.archive.get(seq)
        return None

    # -- retention -------------------------------------------------------------------
    async def expire(self, source_id: str, before_ms: int, *, limit: int = 10_000) -> Expiry:
        return await asyncio.to_thread(self.expire_sync, source_id, before_ms, limit)

    def expire_sync(self, source_id: str, before_ms: int, limit: int = 10_000) -> Expiry:
        """:meth:`expire`, blocking: on a write connection of its own (the writer
        thread's is busy with appends; SQLite lets them take turns)."""
        with self._expiry_lock:
            hot = retention.expire(self.maintenance(), source_id, before_ms, limit)
            if not hot.done or self.archive is None:
                return hot
            return hot.then(self.archive.expire(source_id, before_ms))  # a file per call

    def maintenance(self) -> sqlite3.Connection:
        """The write connection of maintenance (retention, archiving), made on first use;
        callers hold :attr:`maintenance_lock`."""
        if self._expiry_conn is None:
            self._expiry_conn = self._connect(cache_kib=MAINTENANCE_CACHE_KIB)
        return self._expiry_conn

    @property
    def maintenance_lock(self) -> threading.Lock:
        return self._expiry_lock

    def open_archive(self, place: Place, range_size: int) -> SQLiteArchive:
        """Open the archive tier in ``place`` (sealing ranges of ``range_size``)."""
        with self._expiry_lock:
            conn = self.maintenance()
        self.archive = SQLiteArchive(place, range_size, conn, self._expiry_lock,
                                     self.last_seq)
        return self.archive

    async def expired(self, window: Window) -> list[Expired]:
        return await asyncio.to_thread(self._expired, window)

    def _expired(self, window: Window) -> list[Expired]:
        with self.reading() as conn:
            return retention.expired(conn, window)

    def close(self) -> None:
        if self.archive is not None:
            self.archive.close()
        with self._expiry_lock:
            if self._expiry_conn is not None:
                self._expiry_conn.close()
                self._expiry_conn = None
        with self._cv:
            if self._closed:
                return
            self._closing = True
            self._cv.notify_all()
        self._writer.join()
        with self._cv:  # the writer drained the queue: an episode still open ends
            ended = self._end_overload()
        self._log_overload_end(ended)
        self._checkpoint_stop.set()
        self._checkpoint_due.set()
        self._checkpointer.join()
        with self._spare_lock:
            self._closed = True
            spare, self._spare = self._spare, []
        for reader in spare:
            reader.close()


def _settle(subs: list[_Submission], outcomes: Sequence[Outcome]) -> None:
    """Tell every waiter of a commit group, with one wake-up per event loop.

    Why batch the wake-ups: ``call_soon_threadsafe`` writes to the loop's self-pipe, and
    doing that once per request costs more than the request's share of the commit.
    """
    per_loop: dict[asyncio.AbstractEventLoop, list[_Pair]] = {}
    for sub, outcome in zip(subs, outcomes, strict=True):
        if sub.loop is None:
            future = cast("Future[AppendResult]", sub.future)  # set when there is no loop
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
        else:
            per_loop.setdefault(sub.loop, []).append(
                (cast("asyncio.Future[AppendResult]", sub.aio_future), outcome))
    for loop, pairs in per_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop has nobody waiting
            loop.call_soon_threadsafe(_settle_in_loop, pairs)


#: An event loop's future for one submission, and its outcome.
_Pair = tuple["asyncio.Future[AppendResult]", Outcome]


def _settle_in_loop(pairs: list[_Pair]) -> None:
    for fut, outcome in pairs:
        if fut.done():
            continue
        if isinstance(outcome, BaseException):
            fut.set_exception(outcome)
        else:
            fut.set_result(outcome)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
