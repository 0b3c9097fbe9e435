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

Why new keys never go into one big B-tree: the keys are random, so an insert lands on a
random leaf page. A group commit of 20,000 keys into a 10-million-key table (about 50,000
leaf pages) dirties some 17,000 of them: 70 MB written to the WAL (and again by the
checkpoint) for 20,000 events. So keys live in three places:

- ``dedupe_recent`` (at most :data:`RECENT_KEYS`): where a commit claims its new keys,
  sorted, with one ``INSERT OR IGNORE`` (a commit dirties at most its few hundred pages);
- ``dedupe_runs``: each time ``dedupe_recent`` is full it becomes one *run* under the next
  run number. The primary key is (run, h), so a new run is appended at the end of the
  B-tree: each of its pages is written once, and nothing already stored is written again.
  The keys move in key order a slice per commit (a *sweep*, at least
  :data:`SWEEP_KEYS` keys and twice what the commit added, so it outruns what commits add
  behind it), not all in one commit: moving 250,000 keys at once held one collector
  commit for a quarter of a second. A key added during a sweep below where it has reached
  stays in ``dedupe_recent`` for the next run; each move is in the writer's transaction,
  so a key is always in exactly one table. (Until this layout, the keys were merged into
  one ``dedupe`` table instead, which rewrote most of its leaf pages at every merge: a
  cost per event that grew with the log. That table is still read, never written.)
- an in-memory Bloom filter (:mod:`.key_filter`) of every key in the runs and in
  ``dedupe``: a commit looks a key up in the runs only when the filter says it may be
  there (about 2 keys in 100 at most, more when they are real duplicates), so the
  number of runs costs nothing on the common path. The filter never says "absent" of a
  key that is there (it is built from the tables, on a thread of its own, when the
  writer starts, and told of every key a run receives; until it is built every key is
  looked up), so dedupe stays exact; a false "present" only costs a lookup.

A hit is always confirmed by looking the key up in the tables. Every move runs inside
the writer's transaction, so a crash leaves the keys in ``dedupe_recent`` or in a run,
never in neither (a sweep cut short leaves a smaller run, which is still a run).

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
from millpond.storage.sqlite.key_filter import FilterKeeper

SCHEMA = """
CREATE TABLE IF NOT EXISTS dedupe (h INTEGER PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dedupe_recent (
    h INTEGER PRIMARY KEY, seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dedupe_runs (
    run INTEGER NOT NULL, h INTEGER NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (run, h)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dedupe_run_list (run INTEGER PRIMARY KEY, keys INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dedupe_overflow (
    source_id TEXT NOT NULL, message_id TEXT NOT NULL, PRIMARY KEY (source_id, message_id)
) WITHOUT ROWID;
"""

_LOOKUP_CHUNK = 500
#: Keys ``dedupe_recent`` holds before they become a run (see the module docstring): small
#: enough that a commit's random inserts dirty few pages (the table fits the writer's
#: page cache), large enough that runs stay few (a filter hit looks in each).
RECENT_KEYS = 250_000
#: Keys a commit moves into the run being swept, at least (see the module docstring): a
#: few milliseconds per commit, so a whole run moves over some 50 commits.
SWEEP_KEYS = 5_000
_encode = msgspec.json.Encoder().encode

#: One ``INSERT INTO events`` row: seq, source_id, type, event, user_id, anonymous_id,
#: message_id, ts, received, body.
EventRow = tuple[int, str, str, str | None, str | None, str | None, str, int, int, bytes]
#: Rows for ``INSERT INTO events``, a result per submission, the last seq assigned.
Plan = tuple[list[EventRow], list[AppendResult], int]


def dedupe_hash(source_id: str, message_id: str) -> int:
    """Signed 64-bit key (SQLite INTEGER) for a source's messageId.

    The blake2b of ``source_id``, a NUL and ``message_id`` in UTF-8. It runs once per
    event (in an import's reader process, or in the log's writer), so the hash of each
    source's prefix is made once and copied: ``blake2b(..., digest_size=8)`` costs more
    than the copy and the update together. Sharing a prefix's hash between threads is
    safe: only its copies are ever updated.
    """
    prefix = _PREFIXES.get(source_id)
    if prefix is None:
        if len(_PREFIXES) >= 1024:
            _PREFIXES.clear()
        prefix = _PREFIXES[source_id] = blake2b(f"{source_id}\x00".encode(),
                                                digest_size=8).copy
    h = prefix()
    h.update(message_id.encode())
    return int.from_bytes(h.digest(), "little", signed=True)


#: The ``copy`` of each source's prefix hash (see :func:`dedupe_hash`).
_PREFIXES: dict[str, Callable[[], blake2b]] = {}


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
    if conn.total_changes - before == len(flat) and not _in_runs(conn,
                                                                 keeper(conn).maybe_held(flat)):
        _flush_when_full(conn, len(flat))
        return _plan_new(groups, last_seq)
    conn.execute("ROLLBACK")
    conn.execute("BEGIN IMMEDIATE")
    known = _known(conn, flat)
    rows, dedupe_rows, overflow, results, seq = _plan_with_hits(conn, groups, hashes, known,
                                                                last_seq, archived)
    conn.executemany("INSERT INTO dedupe_recent (h, seq) VALUES (?, ?)", sorted(dedupe_rows))
    if overflow:
        conn.executemany("INSERT INTO dedupe_overflow VALUES (?, ?)", overflow)
    _flush_when_full(conn, len(dedupe_rows))
    return rows, results, seq


#: The runs (and the old merged table) holding any of the JSON array of keys: a lookup
#: per key and run, inside SQLite.
_IN_RUNS = ("SELECT h, seq FROM dedupe_runs WHERE run IN (SELECT run FROM dedupe_run_list)"
            " AND h IN (SELECT value FROM json_each(?1))"
            " UNION ALL SELECT h, seq FROM dedupe WHERE h IN (SELECT value FROM json_each(?1))")


def _in_runs(conn: sqlite3.Connection, hashes: list[int]) -> bool:
    """Whether a run (or ``dedupe``) holds any of ``hashes``, the keys the filter let
    through: one statement, a lookup per key and run."""
    return bool(hashes) and conn.execute(f"SELECT 1 FROM ({_IN_RUNS}) LIMIT 1",
                                         (_encode(hashes),)).fetchone() is not None


def _known(conn: sqlite3.Connection, hashes: list[int]) -> dict[int, int]:
    """hash -> seq for those of ``hashes`` any table holds.

    The runs are searched newest first, each for the keys not found yet, so a batch sent
    again soon after (a resumed import, a retry) costs a seek or two per key, not one per
    run; keys found nowhere (the filter's false hits) still cost one per run."""
    known: dict[int, int] = {}
    for i in range(0, len(hashes), _LOOKUP_CHUNK):
        chunk = hashes[i:i + _LOOKUP_CHUNK]
        marks = ",".join("?" * len(chunk))
        for table in ("dedupe_recent", "dedupe"):
            known.update(conn.execute(
                f"SELECT h, seq FROM {table} WHERE h IN ({marks})", chunk).fetchall())
    missing = [h for h in dict.fromkeys(hashes) if h not in known]
    runs = conn.execute("SELECT run FROM dedupe_run_list ORDER BY run DESC")
    for (run,) in runs.fetchall() if missing else ():
        found = dict(conn.execute("SELECT h, seq FROM dedupe_runs WHERE run = ? AND h IN"
                                  " (SELECT value FROM json_each(?))",
                                  (run, _encode(missing))).fetchall())
        if found:
            known.update(found)
            missing = [h for h in missing if h not in found]
            if not missing:
                break
    return known


def keeper(conn: sqlite3.Connection) -> FilterKeeper:
    """The writer connection's filter of the keys in the runs and ``dedupe``
    (:mod:`.key_filter`), which the log gives it when its writer starts; made here, on
    the first use, for a connection the log did not open (tests)."""
    found = getattr(conn, "dedupe_filter", None)
    if found is None:
        path = conn.execute("PRAGMA database_list").fetchone()[2]
        found = conn.dedupe_filter = FilterKeeper(  # type: ignore[attr-defined]
            lambda: sqlite3.connect(path, isolation_level=None))
    return found


def _flush_when_full(conn: sqlite3.Connection, added: int) -> None:
    """Once ``dedupe_recent`` holds :data:`RECENT_KEYS` keys, sweep them into the next run,
    a slice per call, in the caller's transaction (see the module docstring)."""
    # The count and the sweep's progress live on the writer's connection (counted once,
    # then kept up to date): a walk of the table per commit would cost the collector's
    # small commits. A commit that fails after this leaves them ahead of the tables, which
    # only brings a sweep forward or leaves some keys in ``dedupe_recent`` for the next.
    held = getattr(conn, "dedupe_recent_keys", None)
    if held is None:
        held = conn.execute("SELECT count(*) FROM dedupe_recent").fetchone()[0]
    else:
        held += added
    sweep: tuple[int, int] | None = getattr(conn, "dedupe_sweep", None)
    if sweep is None and held >= RECENT_KEYS:
        run = conn.execute("SELECT coalesce(max(run), 0) + 1 FROM dedupe_run_list"
                           ).fetchone()[0]
        sweep = (run, -(1 << 63))
    if sweep is not None:
        moved, sweep = _sweep_slice(conn, *sweep, max(SWEEP_KEYS, 2 * added))
        held -= moved
    conn.dedupe_recent_keys = held  # type: ignore[attr-defined]
    conn.dedupe_sweep = sweep  # type: ignore[attr-defined]


def _sweep_slice(conn: sqlite3.Connection, run: int, start: int,
                 keys: int) -> tuple[int, tuple[int, int] | None]:
    """Move the ``keys`` smallest keys of ``dedupe_recent`` from ``start`` on into ``run``:
    how many moved, and where the sweep goes on (None: it reached the last key)."""
    end = conn.execute("SELECT h FROM dedupe_recent WHERE h >= ? ORDER BY h LIMIT 1 OFFSET ?",
                       (start, keys)).fetchone()
    where, args = ("h >= ?", (start,)) if end is None else ("h >= ? AND h < ?", (start, end[0]))
    keeper(conn).add(h for (h,) in conn.execute(
        f"SELECT h FROM dedupe_recent WHERE {where}", args))
    moved = conn.execute(f"INSERT INTO dedupe_runs (run, h, seq) SELECT ?, h, seq"
                         f" FROM dedupe_recent WHERE {where} ORDER BY h", (run, *args)).rowcount
    # An upsert, not an insert when the sweep starts: a failed commit may have rolled
    # back the row while the sweep went on.
    conn.execute("INSERT INTO dedupe_run_list (run, keys) VALUES (?, ?) ON CONFLICT (run)"
                 " DO UPDATE SET keys = keys + excluded.keys", (run, moved))
    conn.execute(f"DELETE FROM dedupe_recent WHERE {where}", args)
    return moved, None if end is None else (run, end[0])


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
        "SELECT seq FROM dedupe WHERE h = ?1 UNION ALL SELECT seq FROM dedupe_recent WHERE"
        " h = ?1 UNION ALL SELECT seq FROM dedupe_runs WHERE run IN"
        " (SELECT run FROM dedupe_run_list) AND h = ?1", (h,))]
    if conn.execute("SELECT 1 FROM dedupe_overflow WHERE source_id = ? AND message_id = ?",
                    (source_id, message_id)).fetchone():
        # A hash collision stored it outside the dedupe table (rare): search by text.
        candidates += [r[0] for r in conn.execute(
            "SELECT seq FROM events WHERE source_id = ? AND message_id = ?",
            (source_id, message_id))]
    return candidates
