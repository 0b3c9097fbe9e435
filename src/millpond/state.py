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
    """Thread-safe access to ``state.db``: one connection per thread, WAL, FULL sync."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=30)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
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
