"""The state database (``state.db``): configuration and progress, apart from the event log.

Why a separate file: the log's single writer commits thousands of events at a time,
and small configuration writes (a new source, a pump cursor) should never wait behind
it for SQLite's one write lock.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


class StateDB:
    """Thread-safe access to ``state.db``: one connection per thread, WAL, FULL sync (and,
    for progress that may be redone, one with NORMAL sync: :meth:`relaxed_conn`)."""

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

    def relaxed_conn(self) -> sqlite3.Connection:
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
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=30)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        with self._lock:
            self._all.append(conn)
        return conn

    def executescript(self, sql: str) -> None:
        self.conn().executescript(sql)

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
