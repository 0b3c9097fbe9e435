"""Retention in the SQLite log: removing a source's events that arrived before a cutoff,
and remembering what was removed.

Why the removed events' exact keys are kept (``dedupe_expired``): dedupe is forever, and
the dedupe table only holds a 64-bit hash and the seq that claimed it. A later hash hit
whose event is gone is confirmed against this table (see :mod:`.dedupe`), so a resent
``messageId`` of an expired event is still a duplicate, and the append can say it was
one whose first copy expired (an import reports such rows instead of counting them as
stored).

Why per-hour counts (``expired``): a replay over a window retention emptied would
otherwise find nothing and not know why. The counts by (source, hour of event time) let
it say how many events of the window retention took, at a cost of one row per source
and hour of history, not per event.

Each call is one bounded transaction (``limit`` events) on its own connection, so the
group-commit writer waits at most that long for SQLite's write lock.
"""

from __future__ import annotations

import sqlite3
from collections import Counter

from millpond.storage.models import Expired, Expiry, Window, owners_of
from millpond.storage.sqlite import high_water

SCHEMA = """
CREATE TABLE IF NOT EXISTS dedupe_expired (
    source_id TEXT NOT NULL, message_id TEXT NOT NULL, PRIMARY KEY (source_id, message_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS expired (
    source_id TEXT NOT NULL, hour INTEGER NOT NULL, events INTEGER NOT NULL,
    PRIMARY KEY (source_id, hour)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS expired_before (
    source_id TEXT PRIMARY KEY, before_ms INTEGER NOT NULL
) WITHOUT ROWID;
"""

HOUR_MS = 3_600_000


def note_expired(conn: sqlite3.Connection, source_id: str, before_ms: int,
                 keys: list[tuple[str, int]]) -> None:
    """Inside an open transaction: remember ``keys`` ((message_id, ts) of removed events of
    ``source_id``) for dedupe and their per-hour counts, and the source's cutoff."""
    conn.executemany("INSERT OR IGNORE INTO dedupe_expired (source_id, message_id)"
                     " VALUES (?, ?)", [(source_id, m) for m, _ts in keys])
    hours = Counter(ts // HOUR_MS for _m, ts in keys)
    conn.executemany("INSERT INTO expired (source_id, hour, events) VALUES (?, ?, ?)"
                     " ON CONFLICT (source_id, hour) DO UPDATE"
                     " SET events = events + excluded.events",
                     [(source_id, h, n) for h, n in hours.items()])
    conn.execute("INSERT INTO expired_before (source_id, before_ms) VALUES (?, ?)"
                 " ON CONFLICT (source_id) DO UPDATE"
                 " SET before_ms = max(before_ms, excluded.before_ms)", (source_id, before_ms))


def expire(conn: sqlite3.Connection, source_id: str, before_ms: int, limit: int) -> Expiry:
    """One transaction of ``EventLog.expire`` on the write connection ``conn``."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        rows = conn.execute("SELECT seq, message_id, ts, user_id, anonymous_id FROM events"
                            " WHERE source_id = ? AND received < ? ORDER BY seq LIMIT ?",
                            (source_id, before_ms, limit)).fetchall()
        conn.executemany("DELETE FROM events WHERE seq = ?", [(r[0],) for r in rows])
        if rows:
            high_water.keep(conn, rows[-1][0])
        note_expired(conn, source_id, before_ms, [(r[1], r[2]) for r in rows])
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return Expiry(len(rows), len(rows) < limit, owners_of((r[3], r[4]) for r in rows))


def expired(conn: sqlite3.Connection, window: Window) -> list[Expired]:
    """``EventLog.expired`` on a read connection."""
    sql = ("SELECT e.source_id, SUM(e.events), b.before_ms FROM expired e"
           " JOIN expired_before b ON b.source_id = e.source_id"
           " WHERE e.hour >= ? AND e.hour <= ?")
    args: list[object] = [window.ts_from // HOUR_MS, (window.ts_to - 1) // HOUR_MS]
    if window.source_ids is not None:
        sql += f" AND e.source_id IN ({','.join('?' * len(window.source_ids))})"
        args.extend(window.source_ids)
    rows = conn.execute(sql + " GROUP BY e.source_id ORDER BY e.source_id", args).fetchall()
    return [Expired(source_id, int(events), before) for source_id, events, before in rows]


def is_expired(conn: sqlite3.Connection, source_id: str, message_id: str) -> bool:
    """Whether retention removed this source's ``message_id`` (a dedupe hit to confirm)."""
    return conn.execute("SELECT 1 FROM dedupe_expired WHERE source_id = ? AND message_id = ?",
                        (source_id, message_id)).fetchone() is not None
