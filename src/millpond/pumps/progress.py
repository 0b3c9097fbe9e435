"""Delivery progress in ``state.db``: cursors, outcome counters and dead letters.

Why one transaction for all three: a pump's cursor, the counters of the events below it
and the dead letters those events produced must never disagree after a crash. A
checkpoint writes them together (see :class:`millpond.pumps.ledger.Ledger`), so a
restart resumes exactly where the counters and the dead-letter queue say it stopped.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable

from millpond.state import StateDB

SCHEMA = """
CREATE TABLE IF NOT EXISTS delivery_cursors (
    destination_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS delivery_counts (
    destination_id TEXT NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (destination_id, action, outcome, reason)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    destination_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    message_id TEXT,
    action TEXT NOT NULL,
    reason TEXT NOT NULL,
    status INTEGER,
    response TEXT,
    payload TEXT,
    created_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'dead',
    redriven_at REAL
);
CREATE INDEX IF NOT EXISTS dead_letters_by_destination ON dead_letters(destination_id, state, id);
"""

_ADD_COUNT = (
    "INSERT INTO delivery_counts VALUES (?,?,?,?,?) ON CONFLICT DO UPDATE SET n = n + excluded.n"
)
_ADD_DEAD = (
    "INSERT INTO dead_letters (destination_id, seq, message_id, action, reason, status,"
    " response, payload, created_at) VALUES (?,?,?,?,?,?,?,?,?)"
)


class ProgressStore:
    """Cursors and counters per destination; :meth:`checkpoint` is the only writer path
    the pumps use, and it is atomic and durable (``state.db`` runs ``synchronous=FULL``)."""

    def __init__(self, db: StateDB):
        self._db = db
        db.executescript(SCHEMA)

    def cursor(self, destination_id: str) -> int | None:
        row = self._db.conn().execute(
            "SELECT seq FROM delivery_cursors WHERE destination_id = ?",
            (destination_id,)).fetchone()
        return None if row is None else row[0]

    def set_cursor(self, destination_id: str, seq: int) -> None:
        self._db.conn().execute(
            "INSERT INTO delivery_cursors VALUES (?,?,?) ON CONFLICT DO UPDATE"
            " SET seq = excluded.seq, updated_at = excluded.updated_at",
            (destination_id, seq, time.time()))

    def counts(self, destination_id: str) -> Counter:
        """Persisted totals as ``{(action, outcome, reason): n}``."""
        rows = self._db.conn().execute(
            "SELECT action, outcome, reason, n FROM delivery_counts WHERE destination_id = ?",
            (destination_id,))
        return Counter({(r[0], r[1], r[2]): r[3] for r in rows})

    def checkpoint(self, destination_id: str, *, cursor: int | None = None,
                   counts: Counter | None = None, dead: Iterable[dict] = (),
                   redriven: Iterable[int] = ()) -> None:
        """Atomically: move the cursor, add counter deltas, store new dead letters and
        mark redriven dead letters (by id) as resolved."""
        conn = self._db.conn()
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        try:
            if cursor is not None:
                conn.execute(
                    "INSERT INTO delivery_cursors VALUES (?,?,?) ON CONFLICT DO UPDATE"
                    " SET seq = excluded.seq, updated_at = excluded.updated_at",
                    (destination_id, cursor, now))
            if counts:
                conn.executemany(_ADD_COUNT, [(destination_id, *key, n)
                                              for key, n in counts.items() if n])
            rows = [(destination_id, d["seq"], d.get("message_id"), d["action"], d["reason"],
                     d.get("status"), d.get("response"),
                     None if d.get("payload") is None else json.dumps(d["payload"]),
                     d.get("created_at", now)) for d in dead]
            if rows:
                conn.executemany(_ADD_DEAD, rows)
            ids = [(now, i) for i in redriven]
            if ids:
                conn.executemany("UPDATE dead_letters SET state = 'redriven', redriven_at = ?"
                                 " WHERE id = ?", ids)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def forget(self, destination_id: str) -> None:
        """Drop everything a deleted destination left behind."""
        conn = self._db.conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for table in ("delivery_cursors", "delivery_counts", "dead_letters"):
                conn.execute(f"DELETE FROM {table} WHERE destination_id = ?", (destination_id,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
