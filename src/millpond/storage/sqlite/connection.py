"""Connections to the backend's SQLite files, and the one way to write a transaction.

Why one helper for transactions: a store that reads, decides and writes must hold the
write lock from its first read (``BEGIN IMMEDIATE``), or two writers can both read the
old state and one of them fails half-way on the lock upgrade. :func:`immediate` is that
block, with the rollback every failure needs, written once.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any

from millpond.storage.contracts import StorageUnavailable
from millpond.storage.health import StorageHealth

#: SQLite's primary result code for "database or disk is full" (also a full disk's ENOSPC).
SQLITE_FULL = 13
#: Seconds a client is asked to wait before retrying while the disk is full.
DISK_FULL_RETRY_AFTER = 5.0


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite saying the disk (or the database's size limit) is full."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    return (code is not None and code & 0xFF == SQLITE_FULL) \
        or "database or disk is full" in str(exc)


#: Statements that write (their first word), for :meth:`Connection._written`.
_WRITES = frozenset({"INSERT", "UPDATE", "DELETE", "REPLAC", "COMMIT"})


class Connection(sqlite3.Connection):
    """A connection whose statements raise :class:`StorageUnavailable` for a full disk.

    Why here, below every store: a full disk can fail any write (an event commit, a
    checkpoint, a new source), and each caller must see the one transient error the
    contracts name, which the collector and the API answer with a JSON 503 and
    ``Retry-After``, not SQLite's text as a 500. The connection's ``health`` (when set)
    hears of it, so the episode is logged once and shown in stats."""

    health: StorageHealth | None = None

    def _unavailable(self, exc: sqlite3.OperationalError) -> StorageUnavailable:
        reason = f"the disk is full ({exc})"
        if self.health is not None:
            self.health.failed(reason)
        return StorageUnavailable(f"storage unavailable: {reason}; retry later",
                                  retry_after=DISK_FULL_RETRY_AFTER)

    def _written(self, sql: str) -> None:
        """During an episode only: a write outside a transaction (autocommit) committed, so
        the disk takes writes again. (Transactions end it in :func:`immediate`.)"""
        health = self.health
        if health is not None and health.failing and not self.in_transaction \
                and sql.lstrip()[:6].upper() in _WRITES:
            health.ok()

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        try:
            cursor = super().execute(sql, parameters)
        except sqlite3.OperationalError as exc:
            if not disk_full(exc):
                raise
            raise self._unavailable(exc) from exc
        self._written(sql)
        return cursor

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        try:
            cursor = super().executemany(sql, parameters)
        except sqlite3.OperationalError as exc:
            if not disk_full(exc):
                raise
            raise self._unavailable(exc) from exc
        self._written(sql)
        return cursor

    def executescript(self, script: str, /) -> sqlite3.Cursor:
        try:
            return super().executescript(script)
        except sqlite3.OperationalError as exc:
            if not disk_full(exc):
                raise
            raise self._unavailable(exc) from exc


def connect(path: str | Path, synchronous: str = "FULL", *,
            cache_kib: int | None = None, health: StorageHealth | None = None,
            ) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with WAL on, usable from
    any thread (each caller keeps to its own connection or serializes its use); a full
    disk raises :class:`StorageUnavailable` (:class:`Connection`), told to ``health``."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False,
                           timeout=30, factory=Connection)
    conn.health = health
    conn.execute("PRAGMA journal_mode=WAL")
    # Deleted content is overwritten, not just unlinked: a person deleted by a
    # regulation must leave no bytes in free space (storage/sqlite/eraser.py).
    conn.execute("PRAGMA secure_delete=ON")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    if cache_kib is not None:
        conn.execute(f"PRAGMA cache_size=-{cache_kib}")
        conn.execute("PRAGMA temp_store=MEMORY")
    return conn


@contextlib.contextmanager
def immediate(conn: sqlite3.Connection) -> Generator[sqlite3.Connection]:
    """``with immediate(conn):`` runs the block in one write transaction taken up front;
    it commits at the end of the block and rolls back on any exception (re-raised)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    health = getattr(conn, "health", None)
    if health is not None:
        health.ok()  # a write committed: a full-disk episode, if any, is over


@contextlib.contextmanager
def snapshot(conn: sqlite3.Connection) -> Generator[sqlite3.Connection]:
    """``with snapshot(conn):`` runs the block's reads in one read transaction, so they all
    see the database as of the first (in autocommit mode each statement sees its own)."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.execute("COMMIT")


class StateDB:
    """Thread-safe access to one state file: one connection per thread, WAL, FULL sync
    (and, for progress that may be redone, one with NORMAL sync: :meth:`relaxed`).

    Why a separate file from the log (``state.db``): the log's single writer commits
    thousands of events at a time, and small configuration writes (a new source, a run's
    cursor) should never wait behind it for SQLite's one write lock.
    """

    def __init__(self, path: str | Path, health: StorageHealth | None = None):
        self.path = str(path)
        self.health = health
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect("FULL")
        return conn

    def relaxed(self) -> sqlite3.Connection:
        """This thread's connection that commits without an fsync (synchronous=NORMAL).

        For progress that is cheaper to redo than to fsync every time: a replay's
        checkpoint after each batch. In WAL mode a process crash loses none of these
        commits; a power loss can only take the latest ones back, to an earlier consistent
        state (a replay then resends from there; receivers dedupe on messageId). The next
        FULL commit on any connection makes them durable as well."""
        conn = getattr(self._local, "relaxed", None)
        if conn is None:
            conn = self._local.relaxed = self._connect("NORMAL")
        return conn

    def _connect(self, synchronous: str) -> sqlite3.Connection:
        conn = connect(self.path, synchronous, health=self.health)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys=ON")
        with self._lock:
            self._all.append(conn)
        return conn

    def executescript(self, sql: str) -> None:
        self.conn().executescript(sql)

    def columns(self, table: str) -> set[str]:
        return {r[1] for r in self.conn().execute(f"PRAGMA table_info({table})")}

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()


def unique_violation(exc: BaseException, column: str) -> bool:
    """Whether ``exc`` is SQLite refusing a duplicate value of ``column``."""
    return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc) \
        and f".{column}" in str(exc)
