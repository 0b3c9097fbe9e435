"""state.db connections: FULL sync by default, NORMAL only where asked for; transactions."""

from __future__ import annotations

import sqlite3

import pytest

from millpond.storage.sqlite.connection import StateDB, immediate


def test_relaxed_connection_skips_fsync_and_shares_the_data(tmp_path):
    db = StateDB(tmp_path / "state.db")
    try:
        full, relaxed = db.conn(), db.relaxed()
        assert full is not relaxed and db.relaxed() is relaxed
        assert full.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert relaxed.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert relaxed.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        full.execute("CREATE TABLE t (x)")
        relaxed.execute("INSERT INTO t VALUES (1)")
        assert [tuple(r) for r in full.execute("SELECT x FROM t")] == [(1,)]
    finally:
        db.close()


def test_immediate_commits_or_rolls_back_the_whole_block(tmp_path):
    db = StateDB(tmp_path / "state.db")
    try:
        conn = db.conn()
        conn.execute("CREATE TABLE t (x INTEGER NOT NULL)")
        with immediate(conn):
            conn.execute("INSERT INTO t VALUES (1)")
            conn.execute("INSERT INTO t VALUES (2)")
        with pytest.raises(sqlite3.IntegrityError), immediate(conn):
            conn.execute("INSERT INTO t VALUES (3)")
            conn.execute("INSERT INTO t VALUES (NULL)")
        assert not conn.in_transaction
        assert [r[0] for r in conn.execute("SELECT x FROM t ORDER BY x")] == [1, 2]
    finally:
        db.close()
