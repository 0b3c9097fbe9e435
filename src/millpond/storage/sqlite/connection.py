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


def connect(path: str | Path, synchronous: str = "FULL", *,
            cache_kib: int | None = None) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with WAL on, usable from
    any thread (each caller keeps to its own connection or serializes its use)."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False,
                           timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
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


class StateDB:
    """Thread-safe access to one state file: one connection per thread, WAL, FULL sync
    (and, for progress that may be redone, one with NORMAL sync: :meth:`relaxed`).

    Why a separate file from the log (``state.db``): the log's single writer commits
    thousands of events at a time, and small configuration writes (a new source, a run's
    cursor) should never wait behind it for SQLite's one write lock.
    """

    def __init__(self, path: str | Path):
        self.path = str(path)
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
        conn = connect(self.path, synchronous)
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
