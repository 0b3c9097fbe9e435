"""state.db connections: FULL sync by default, NORMAL only where asked for."""

from __future__ import annotations

from millpond.state import StateDB


def test_relaxed_connection_skips_fsync_and_shares_the_data(tmp_path):
    db = StateDB(tmp_path / "state.db")
    try:
        full, relaxed = db.conn(), db.relaxed_conn()
        assert full is not relaxed and db.relaxed_conn() is relaxed
        assert full.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert relaxed.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert relaxed.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        full.execute("CREATE TABLE t (x)")
        relaxed.execute("INSERT INTO t VALUES (1)")
        assert [tuple(r) for r in full.execute("SELECT x FROM t")] == [(1,)]
    finally:
        db.close()
