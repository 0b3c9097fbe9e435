"""The highest seq the log ever gave, kept when rows leave the ``events`` table.

Why: the next seq is one past the highest ever given, and the log finds that at open from
``MAX(seq)`` of its rows. Retention, a person's erasure and the archive tier remove rows,
the newest ones too; without this mark a restart would give their seqs again, and every
reader whose cursor is past them (a destination, a segment follower) would skip the new
events that reuse them. Removal paths record the mark in the transaction that removes the
rows; the archive's own manifest (``archive_files``) already records what it moved."""

from __future__ import annotations

import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS high_water (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    seq INTEGER NOT NULL
);
"""


def keep(conn: sqlite3.Connection, seq: int) -> None:
    """Record that seqs up to ``seq`` were given (inside the removing transaction)."""
    conn.execute("INSERT INTO high_water (one, seq) VALUES (1, ?) ON CONFLICT (one)"
                 " DO UPDATE SET seq = max(seq, excluded.seq)", (seq,))


def last_seq(conn: sqlite3.Connection) -> int:
    """The highest seq given: stored rows, removed rows, and archived ranges."""
    found = [conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0],
             conn.execute("SELECT COALESCE(MAX(seq), 0) FROM high_water").fetchone()[0]]
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'archive_files'").fetchone():
        found.append(conn.execute(
            "SELECT COALESCE(MAX(last_seq), 0) FROM archive_files").fetchone()[0])
    return max(found)
