"""Forever dedupe for the SQLite log: the 64-bit key under which it remembers each
(source, messageId) pair, and the planning of a group commit around it.

Why a hash and not the text: a UNIQUE index on a text UUID halves SQLite's append
rate (DESIGN.md reference figures); a ``WITHOUT ROWID`` table of 64-bit integers keeps
most of it. Collisions are possible (about 3 in a million at 10 million events), so a hash
hit is always confirmed against the stored message before anything is dropped: a collision
stores the event and remembers its exact key in an overflow table instead.

Dedupe is forever, so whatever removes events must first copy their exact
(source_id, message_id) where a hash hit whose event is gone is confirmed: retention into
``dedupe_expired`` (:mod:`.retention`, so the append can say the first copy expired),
anything else into the overflow table.

The key scheme is private to this backend. Producers that have a core to spare (an
import's reader process) get :func:`dedupe_hash` through ``EventLog.dedupe_keyer()`` and
fill ``NewEvent.dedupe_key`` with it, so the writer does not compute it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from hashlib import blake2b

from millpond.storage.models import AppendResult, NewEvent
from millpond.storage.sqlite import retention

SCHEMA = """
CREATE TABLE IF NOT EXISTS dedupe (h INTEGER PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dedupe_overflow (
    source_id TEXT NOT NULL, message_id TEXT NOT NULL, PRIMARY KEY (source_id, message_id)
) WITHOUT ROWID;
"""

_LOOKUP_CHUNK = 500

#: One ``INSERT INTO events`` row: seq, source_id, type, event, user_id, anonymous_id,
#: message_id, ts, received, body.
EventRow = tuple[int, str, str, str | None, str | None, str | None, str, int, int, bytes]
#: Rows for ``INSERT INTO events``, a result per submission, the last seq assigned.
Plan = tuple[list[EventRow], list[AppendResult], int]


def dedupe_hash(source_id: str, message_id: str) -> int:
    """Signed 64-bit key (SQLite INTEGER) for a source's messageId."""
    digest = blake2b(f"{source_id}\x00{message_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


#: (source_id, message_id) of an archived seq, or None (the archive tier's ``key_of``).
ArchivedKey = Callable[[int], tuple[str, str] | None]


def plan_group(conn: sqlite3.Connection, groups: Sequence[Sequence[NewEvent]],
               last_seq: int, archived: ArchivedKey | None = None) -> Plan:
    """Inside the writer's open transaction: claim the dedupe keys of ``groups`` (one list
    of events per submission) and assign seqs after ``last_seq`` to the new events.

    May restart the transaction (ROLLBACK, BEGIN IMMEDIATE) when some key was seen
    before; the caller inserts the returned rows and commits.
    """
    hashes = [[dedupe_hash(e.source_id, e.message_id) if e.dedupe_key is None
               else e.dedupe_key for e in events] for events in groups]
    flat = [h for hs in hashes for h in hs]
    # Optimistic path: claim every hash at once. If all were new (the common case) the
    # claim is already the dedupe insert; otherwise undo it and confirm each hit.
    before = conn.total_changes
    conn.executemany("INSERT OR IGNORE INTO dedupe (h, seq) VALUES (?, ?)",
                     zip(flat, range(last_seq + 1, last_seq + 1 + len(flat)), strict=True))
    if conn.total_changes - before == len(flat):
        return _plan_new(groups, last_seq)
    conn.execute("ROLLBACK")
    conn.execute("BEGIN IMMEDIATE")
    known: dict[int, int] = {}
    for i in range(0, len(flat), _LOOKUP_CHUNK):
        chunk = flat[i:i + _LOOKUP_CHUNK]
        marks = ",".join("?" * len(chunk))
        known.update(conn.execute(
            f"SELECT h, seq FROM dedupe WHERE h IN ({marks})", chunk).fetchall())
    rows, dedupe_rows, overflow, results, seq = _plan_with_hits(conn, groups, hashes, known,
                                                                last_seq, archived)
    conn.executemany("INSERT INTO dedupe (h, seq) VALUES (?, ?)", dedupe_rows)
    if overflow:
        conn.executemany("INSERT INTO dedupe_overflow VALUES (?, ?)", overflow)
    return rows, results, seq


def _row(seq: int, e: NewEvent) -> EventRow:
    return (seq, e.source_id, e.type, e.event_name, e.user_id, e.anonymous_id, e.message_id,
            e.ts_ms, e.received_ms, e.body)


def _plan_new(groups: Sequence[Sequence[NewEvent]], last_seq: int) -> Plan:
    """The common case: no messageId seen before, so every event gets the next seq."""
    first = last_seq + 1
    events = [e for group in groups for e in group]
    rows = [(first + i, e.source_id, e.type, e.event_name, e.user_id, e.anonymous_id,
             e.message_id, e.ts_ms, e.received_ms, e.body) for i, e in enumerate(events)]
    results: list[AppendResult] = []
    seq = first
    for group in groups:
        results.append(AppendResult(list(range(seq, seq + len(group)))))
        seq += len(group)
    return rows, results, first + len(events) - 1


def _plan_with_hits(conn: sqlite3.Connection, groups: Sequence[Sequence[NewEvent]],
                    hashes: list[list[int]], known: dict[int, int], last_seq: int,
                    archived: ArchivedKey | None = None
                    ) -> tuple[list[EventRow], list[tuple[int, int]], list[tuple[str, str]],
                               list[AppendResult], int]:
    """Some hashes were seen before (or twice in this group): confirm each hit."""
    seq = last_seq
    rows: list[EventRow] = []
    dedupe_rows: list[tuple[int, int]] = []
    overflow: list[tuple[str, str]] = []
    in_group: dict[int, NewEvent] = {}
    results: list[AppendResult] = []
    for events, group_hashes in zip(groups, hashes, strict=True):
        seqs: list[int | None] = []
        gone: list[int] = []
        for i, (ev, h) in enumerate(zip(events, group_hashes, strict=True)):
            found = (h in known or h in in_group) and _is_duplicate(conn, ev, h, known,
                                                                     in_group, overflow,
                                                                     archived)
            if found:
                seqs.append(None)
                if found == EXPIRED:
                    gone.append(i)
                continue
            seq += 1
            if h in known or h in in_group:
                overflow.append((ev.source_id, ev.message_id))
            else:
                dedupe_rows.append((h, seq))
                in_group[h] = ev
            rows.append(_row(seq, ev))
            seqs.append(seq)
        results.append(AppendResult(seqs, gone))
    return rows, dedupe_rows, overflow, results, seq


#: What :func:`_is_duplicate` found: the first copy is stored, or retention removed it.
STORED = "stored"
EXPIRED = "expired"


def _is_duplicate(conn: sqlite3.Connection, ev: NewEvent, h: int, known: dict[int, int],
                  in_group: dict[int, NewEvent], overflow: list[tuple[str, str]],
                  archived: ArchivedKey | None = None) -> str | None:
    """Confirm a hash hit against the real (source, messageId) before dropping anything:
    :data:`STORED`, :data:`EXPIRED` (a duplicate whose first copy retention removed), or
    None (a collision: not a duplicate)."""
    key = (ev.source_id, ev.message_id)
    if key in overflow:
        return STORED
    twin = in_group.get(h)
    if twin is not None and (twin.source_id, twin.message_id) == key:
        return STORED
    if h in known:
        row = conn.execute("SELECT source_id, message_id FROM events WHERE seq = ?",
                           (known[h],)).fetchone()
        if row is not None and tuple(row) == key:
            return STORED
        if row is None and archived is not None and archived(known[h]) == key:
            return STORED  # the first copy is in the archive tier
        if row is None and retention.is_expired(conn, *key):
            return EXPIRED
    if conn.execute("SELECT 1 FROM dedupe_overflow WHERE source_id = ? AND message_id = ?",
                    key).fetchone() is not None:
        return EXPIRED if retention.is_expired(conn, *key) else STORED
    return None


def candidate_seqs(conn: sqlite3.Connection, source_id: str, message_id: str) -> list[int]:
    """Seqs that may hold this source's ``message_id``; the caller confirms each."""
    row = conn.execute("SELECT seq FROM dedupe WHERE h = ?",
                       (dedupe_hash(source_id, message_id),)).fetchone()
    candidates = [row[0]] if row else []
    if conn.execute("SELECT 1 FROM dedupe_overflow WHERE source_id = ? AND message_id = ?",
                    (source_id, message_id)).fetchone():
        # A hash collision stored it outside the dedupe table (rare): search by text.
        candidates += [r[0] for r in conn.execute(
            "SELECT seq FROM events WHERE source_id = ? AND message_id = ?",
            (source_id, message_id))]
    return candidates
