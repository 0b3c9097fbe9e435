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

Why two tables, ``dedupe_recent`` (small) merged into ``dedupe`` (every key) in bulk: the
keys are random, so an insert lands on a random leaf page of the B-tree. A group commit of
20,000 keys into a 10-million-key table (about 50,000 leaf pages) dirties some 17,000 of
them: 70 MB written to the WAL (and again by the checkpoint) for 20,000 events, 3.5 KB per
event, which is what made imports slow down with the log's size. New keys go to
``dedupe_recent`` instead (at most :data:`RECENT_KEYS`, so a commit dirties at most its
few hundred pages), sorted so each page is written once per commit, and every
:data:`RECENT_KEYS` keys they move into ``dedupe`` in one sorted ``INSERT ... SELECT``
(each of its leaf pages written once per merge, not once per commit). A key is looked up
in both; the merge runs inside the writer's transaction, so a crash leaves the keys in
one table or the other, never in neither.

The key scheme is private to this backend. Producers that have a core to spare (an
import's reader process) get :func:`dedupe_hash` through ``EventLog.dedupe_keyer()`` and
fill ``NewEvent.dedupe_key`` with it, so the writer does not compute it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from hashlib import blake2b

import msgspec

from millpond.storage.models import AppendResult, NewEvent
from millpond.storage.sqlite import retention

SCHEMA = """
CREATE TABLE IF NOT EXISTS dedupe (h INTEGER PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dedupe_recent (
    h INTEGER PRIMARY KEY, seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dedupe_overflow (
    source_id TEXT NOT NULL, message_id TEXT NOT NULL, PRIMARY KEY (source_id, message_id)
) WITHOUT ROWID;
"""

_LOOKUP_CHUNK = 500
#: Keys ``dedupe_recent`` holds before they move into ``dedupe`` (see the module docstring):
#: small enough that a commit's random inserts dirty few pages, large enough that a merge
#: (which rewrites most of ``dedupe``'s leaf pages) comes rarely.
RECENT_KEYS = 250_000
_encode = msgspec.json.Encoder().encode

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
    # Optimistic path: claim every hash at once, in key order (each page written once).
    # If all were new to both tables (the common case) the claim is already the dedupe
    # insert; otherwise undo it and confirm each hit.
    before = conn.total_changes
    conn.executemany("INSERT OR IGNORE INTO dedupe_recent (h, seq) VALUES (?, ?)",
                     sorted(zip(flat, range(last_seq + 1, last_seq + 1 + len(flat)),
                                strict=True)))
    if conn.total_changes - before == len(flat) and not _in_merged(conn, flat):
        _merge_when_full(conn, len(flat))
        return _plan_new(groups, last_seq)
    conn.execute("ROLLBACK")
    conn.execute("BEGIN IMMEDIATE")
    known = _known(conn, flat)
    rows, dedupe_rows, overflow, results, seq = _plan_with_hits(conn, groups, hashes, known,
                                                                last_seq, archived)
    conn.executemany("INSERT INTO dedupe_recent (h, seq) VALUES (?, ?)", sorted(dedupe_rows))
    if overflow:
        conn.executemany("INSERT INTO dedupe_overflow VALUES (?, ?)", overflow)
    _merge_when_full(conn, len(dedupe_rows))
    return rows, results, seq


def _in_merged(conn: sqlite3.Connection, hashes: list[int]) -> bool:
    """Whether ``dedupe`` (the merged keys) holds any of ``hashes``: one statement, a
    lookup per key (the keys travel as one JSON array, SQLite's ``json_each``)."""
    return conn.execute("SELECT 1 FROM dedupe WHERE h IN (SELECT value FROM json_each(?))"
                        " LIMIT 1", (_encode(hashes),)).fetchone() is not None


def _known(conn: sqlite3.Connection, hashes: list[int]) -> dict[int, int]:
    """hash -> seq for those of ``hashes`` either table holds."""
    known: dict[int, int] = {}
    for i in range(0, len(hashes), _LOOKUP_CHUNK):
        chunk = hashes[i:i + _LOOKUP_CHUNK]
        marks = ",".join("?" * len(chunk))
        for table in ("dedupe", "dedupe_recent"):
            known.update(conn.execute(
                f"SELECT h, seq FROM {table} WHERE h IN ({marks})", chunk).fetchall())
    return known


def _merge_when_full(conn: sqlite3.Connection, added: int) -> None:
    """Move ``dedupe_recent`` into ``dedupe`` once it holds :data:`RECENT_KEYS` keys, in
    the caller's transaction (see the module docstring)."""
    # The count lives on the writer's connection (counted once, then kept up to date):
    # a walk of the table per commit would cost the collector's small commits. A commit
    # that fails after this leaves it too high, which only brings a merge forward.
    held = getattr(conn, "dedupe_recent_keys", None)
    if held is None:
        held = conn.execute("SELECT count(*) FROM dedupe_recent").fetchone()[0]
    else:
        held += added
    if held < RECENT_KEYS:
        conn.dedupe_recent_keys = held  # type: ignore[attr-defined]
        return
    # Disjoint by construction (a key is claimed in recent only when dedupe lacks it);
    # OR IGNORE so that a broken invariant costs a duplicate key, not the writer.
    conn.execute("INSERT OR IGNORE INTO dedupe (h, seq) SELECT h, seq FROM dedupe_recent"
                 " ORDER BY h")
    conn.execute("DELETE FROM dedupe_recent")
    conn.dedupe_recent_keys = 0  # type: ignore[attr-defined]


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
    h = dedupe_hash(source_id, message_id)
    candidates = [r[0] for r in conn.execute(
        "SELECT seq FROM dedupe WHERE h = ? UNION ALL SELECT seq FROM dedupe_recent WHERE h = ?",
        (h, h))]
    if conn.execute("SELECT 1 FROM dedupe_overflow WHERE source_id = ? AND message_id = ?",
                    (source_id, message_id)).fetchone():
        # A hash collision stored it outside the dedupe table (rare): search by text.
        candidates += [r[0] for r in conn.execute(
            "SELECT seq FROM events WHERE source_id = ? AND message_id = ?",
            (source_id, message_id))]
    return candidates
