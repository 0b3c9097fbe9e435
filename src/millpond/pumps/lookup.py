"""Finding a stored event by ``messageId`` for the event tester.

An adapter on our side until the log offers the lookup itself: :class:`EventLog` has no
"by messageId" query, but the SQLite log keeps an indexed dedupe table keyed by
``dedupe_hash(source_id, messageId)`` -> seq, so one indexed probe per source finds the
event without scanning. A log that grows a ``find_message(source_id, message_id)``
method is used instead.
"""

from __future__ import annotations

import json
import sqlite3

from millpond.log.base import EventLog, EventQuery
from millpond.log.dedupe import dedupe_hash


def _by_seq(log: EventLog, seq: int) -> dict | None:
    rows = log.query(EventQuery(after_seq=seq - 1, before_seq=seq + 1, limit=1))
    return json.loads(rows[0]) if rows else None


def find_event(log: EventLog, source_ids: list[str], message_id: str) -> dict | None:
    """The stored event (with ``seq``) whose source is one of ``source_ids``, or None."""
    finder = getattr(log, "find_message", None)
    if callable(finder):
        for source_id in source_ids:
            found = finder(source_id, message_id)
            if found is not None:
                return found
        return None
    path = getattr(log, "path", None)
    if path is None:
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        for source_id in source_ids:
            row = conn.execute("SELECT seq FROM dedupe WHERE h = ?",
                               (dedupe_hash(source_id, message_id),)).fetchone()
            if row is None:
                continue
            event = _by_seq(log, row[0])
            if event and event.get("messageId") == message_id \
                    and event.get("source_id") == source_id:
                return event
        # A hash collision stores the event outside the dedupe table, its exact key in
        # dedupe_overflow (indexed); only then is the events table searched by text.
        row = None
        for source_id in source_ids:
            if conn.execute("SELECT 1 FROM dedupe_overflow WHERE source_id = ? AND"
                            " message_id = ?", (source_id, message_id)).fetchone():
                row = conn.execute("SELECT seq FROM events WHERE source_id = ? AND"
                                   " message_id = ?", (source_id, message_id)).fetchone()
                if row:
                    break
    finally:
        conn.close()
    return _by_seq(log, row[0]) if row else None
