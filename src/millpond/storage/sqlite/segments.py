"""Segments and memberships in their own file, ``segments.db``.

Why a file of its own: memberships are derived data written in bursts (a build writes a
row per person per segment), and those transactions should never hold the write lock of
``state.db``, where a source or a run's checkpoint is waiting."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Generator, Sequence
from contextlib import contextmanager
from pathlib import Path

import msgspec

from millpond.errors import Conflict, NotFound
from millpond.storage.models import Member, MembershipChange, MembersPage, Segment
from millpond.storage.segment_rows import plan_apply, split_rows
from millpond.storage.sqlite.connection import StateDB, connect, immediate, unique_violation

SCHEMA = """
CREATE TABLE IF NOT EXISTS segments (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    record TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS members (
    segment_id TEXT NOT NULL REFERENCES segments(id) ON DELETE CASCADE,
    person_id TEXT NOT NULL,
    member INTEGER NOT NULL,
    since_ms INTEGER,
    next_change_ms INTEGER,
    user_id TEXT,
    anonymous_id TEXT,
    ids TEXT NOT NULL,
    processed_ms INTEGER NOT NULL,
    PRIMARY KEY (segment_id, person_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS members_current ON members(segment_id, member, person_id);
CREATE INDEX IF NOT EXISTS members_person ON members(person_id, member);
CREATE INDEX IF NOT EXISTS members_due ON members(next_change_ms)
    WHERE next_change_ms IS NOT NULL;
CREATE TABLE IF NOT EXISTS member_ids (
    identity TEXT NOT NULL,
    segment_id TEXT NOT NULL,
    person_id TEXT NOT NULL,
    PRIMARY KEY (identity, segment_id, person_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY,
    segment_id TEXT NOT NULL REFERENCES segments(id) ON DELETE CASCADE,
    person_id TEXT NOT NULL,
    member INTEGER NOT NULL,
    at_ms INTEGER,
    processed_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS history_person ON history(person_id, id);
CREATE TABLE IF NOT EXISTS position (one INTEGER PRIMARY KEY CHECK (one = 1), seq INTEGER);
CREATE TABLE IF NOT EXISTS retention_applied (
    source_id TEXT PRIMARY KEY,
    before_ms INTEGER NOT NULL
);
"""

_json = msgspec.json.Encoder()

#: Page cache of the membership connection (:meth:`SQLiteSegmentStore._hot`), KiB.
HOT_CACHE_KIB = 16_384
#: The least time between two checkpoints of ``segments.db`` after membership writes,
#: and the WAL pages past which SQLite checkpoints anyway (a fallback; see :meth:`apply`).
CHECKPOINT_INTERVAL = 1.0
_CHECKPOINT_PAGES = 32_768


def _encode_ids(ids: Sequence[str]) -> str:
    """A row's ids as the JSON text the ``ids`` column keeps (msgspec: a build writes
    them by the hundred thousand)."""
    return _json.encode(ids).decode()


def _segment(row: sqlite3.Row) -> Segment:
    return msgspec.json.decode(row["record"], type=Segment)


_ids = msgspec.json.Decoder(tuple[str, ...]).decode


def _member(row: sqlite3.Row) -> Member:
    """A row of ``SELECT *`` (the table's column order) as a Member."""
    return Member(row[0], row[1], bool(row[2]), row[3], row[4], row[5], row[6],
                  _ids(row[7]), row[8])


class SQLiteSegmentStore:
    """:class:`~millpond.storage.contracts.SegmentStore` on ``segments.db``."""

    def __init__(self, path: str | Path):
        self._db = StateDB(path)
        self._db.executescript(SCHEMA)
        self._hot_conn: sqlite3.Connection | None = None
        self._hot_lock = threading.Lock()
        self._checkpointed = 0.0

    def close(self) -> None:
        with self._hot_lock:
            if self._hot_conn is not None:
                self._hot_conn.close()
                self._hot_conn = None
        self._db.close()

    @contextmanager
    def _hot(self) -> Generator[sqlite3.Connection]:
        """The one connection the membership writes and the engine's lookups share.

        Why one, under a lock, rather than each thread's own: the engine calls the store
        from whichever worker thread ``asyncio.to_thread`` picks, and in WAL mode a
        connection drops its whole page cache whenever another connection has written.
        With a connection per thread, every follower tick began cold, re-reading the
        members b-tree pages it then rewrote; one connection with a cache that holds the
        hot part of the tables keeps them. Commits skip the fsync (``synchronous=NORMAL``:
        see :meth:`apply`).

        Foreign keys are off on this connection: checking each member and history row
        against ``segments`` was a fifth of a build's membership writes (1.3 of 6.6
        CPU-s for 543,000 rows), and :meth:`apply` already keeps only the rows of
        segments that exist, read in its own write transaction, so none can go between
        the check and the insert. Deleting a segment goes through the other connection,
        where they are on and cascade."""
        with self._hot_lock:
            if self._hot_conn is None:
                conn = connect(self._db.path, "NORMAL", cache_kib=HOT_CACHE_KIB,
                               health=self._db.health)
                conn.execute("PRAGMA foreign_keys=OFF")
                conn.execute(f"PRAGMA wal_autocheckpoint={_CHECKPOINT_PAGES}")
                self._hot_conn = conn
            yield self._hot_conn

    # -- definitions --------------------------------------------------------------------

    def _record(self, segment: Segment) -> str:
        return msgspec.json.encode(segment).decode()

    def create(self, segment: Segment) -> Segment:
        try:
            self._db.conn().execute("INSERT INTO segments VALUES (?,?,?,?)",
                                    (segment.id, segment.key, self._record(segment),
                                     segment.created_ms))
        except sqlite3.IntegrityError as exc:
            raise self._conflict(exc, segment) from None
        return segment

    @staticmethod
    def _conflict(exc: Exception, segment: Segment) -> Exception:
        if unique_violation(exc, "key"):
            return Conflict(f"a segment with key {segment.key!r} already exists", field="key")
        if unique_violation(exc, "id"):
            return Conflict(f"a segment with id {segment.id!r} already exists", field="id")
        return exc

    def get(self, ref: str) -> Segment:
        row = self._db.conn().execute(
            "SELECT * FROM segments WHERE id = ? OR key = ? ORDER BY id = ? DESC LIMIT 1",
            (ref, ref, ref)).fetchone()
        if row is None:
            raise NotFound(f"no segment {ref!r}", field="segment")
        return _segment(row)

    def list(self) -> list[Segment]:
        rows = self._db.conn().execute("SELECT * FROM segments ORDER BY created_ms, id")
        return [_segment(r) for r in rows]

    def update(self, segment: Segment) -> Segment:
        try:
            cur = self._db.conn().execute(
                "UPDATE segments SET key = ?, record = ? WHERE id = ?",
                (segment.key, self._record(segment), segment.id))
        except sqlite3.IntegrityError as exc:
            raise self._conflict(exc, segment) from None
        if cur.rowcount == 0:
            raise NotFound(f"no segment {segment.id!r}", field="segment")
        return segment

    def delete(self, segment_id: str) -> Segment:
        conn = self._db.conn()
        with immediate(conn):
            found = self.get(segment_id) if conn.execute(
                "SELECT 1 FROM segments WHERE id = ?", (segment_id,)).fetchone() else None
            if found is None:
                raise NotFound(f"no segment {segment_id!r}", field="segment")
            conn.execute("DELETE FROM member_ids WHERE segment_id = ?", (segment_id,))
            conn.execute("DELETE FROM segments WHERE id = ?", (segment_id,))
        return found

    # -- memberships ----------------------------------------------------------------------

    def apply(self, rows: Sequence[Member], *, drop: Sequence[tuple[str, str]] = (),
              checkpoint: int | None = None) -> list[MembershipChange]:
        """One transaction of set-wise statements: a build writes rows by the thousand,
        and a statement per row per table would cost more than computing them.

        Committed without an fsync (``synchronous=NORMAL``, :meth:`StateDB.relaxed`), as
        the profile store does: an fsync per follower tick was most of its wall time.
        The rows are derived from the log and the checkpoint commits with them, so a
        power loss can only take the latest ticks back, rows and checkpoint together;
        the engine then redoes them from the log, and the Audience events it appends
        again carry the same messageIds (the history rolled back with the rows), which
        the log dedupes."""
        added: list[MembershipChange] = []
        with self._hot() as conn, immediate(conn):
            known = {r[0] for r in conn.execute("SELECT id FROM segments")}
            rows = [r for r in rows if r.segment_id in known]
            stored = self._stored(conn, [*drop, *((r.segment_id, r.person_id) for r in rows)])
            plan = plan_apply(rows, drop, stored)
            # member_ids is keyed by identity first: delete through the stored ids, never
            # with a scan for (segment, person).
            self._forget_ids(conn, plan.gone, stored)
            conn.executemany("DELETE FROM members WHERE segment_id = ? AND person_id = ?",
                             plan.gone)
            added = plan.added
            conn.executemany("INSERT INTO history (segment_id, person_id, member, at_ms,"
                             " processed_ms) VALUES (?,?,?,?,?)",
                             [(c.segment_id, c.person_id, int(c.member), c.at_ms,
                               c.processed_ms) for c in added])
            # A stored row keeping its ids (nearly every live write: merges are rare) is
            # updated in place, and only in the columns that can change: a REPLACE would
            # delete and re-insert it in every index and in member_ids, and each b-tree
            # page a tick touches is written to the WAL at its commit (most of the
            # follower's write cost at a hundred thousand people).
            split = split_rows(plan, stored)
            self._forget_ids(conn, split.moved, stored)
            conn.executemany("UPDATE members SET since_ms = ?, next_change_ms = ?,"
                             " user_id = ?, anonymous_id = ?, processed_ms = ?"
                             " WHERE segment_id = ? AND person_id = ?",
                             [(r.since_ms, r.next_change_ms, r.user_id, r.anonymous_id,
                               r.processed_ms, r.segment_id, r.person_id) for r in split.kept])
            conn.executemany("UPDATE members SET member = ?, since_ms = ?, next_change_ms = ?,"
                             " user_id = ?, anonymous_id = ?, processed_ms = ?"
                             " WHERE segment_id = ? AND person_id = ?",
                             [(int(r.member), r.since_ms, r.next_change_ms, r.user_id,
                               r.anonymous_id, r.processed_ms, r.segment_id, r.person_id)
                              for r in split.flipped])
            conn.executemany("INSERT OR REPLACE INTO members VALUES (?,?,?,?,?,?,?,?,?)",
                             [(r.segment_id, r.person_id, int(r.member), r.since_ms,
                               r.next_change_ms, r.user_id, r.anonymous_id,
                               _encode_ids(r.ids), r.processed_ms) for r in split.fresh])
            conn.executemany("INSERT OR IGNORE INTO member_ids VALUES (?,?,?)",
                             [(i, r.segment_id, r.person_id) for r in split.fresh
                              for i in r.ids])
            if checkpoint is not None:
                conn.execute("INSERT INTO position VALUES (1, ?) ON CONFLICT (one)"
                             " DO UPDATE SET seq = excluded.seq", (checkpoint,))
        with self._hot() as conn:
            self._checkpoint_now(conn)
        return added

    def _checkpoint_now(self, conn: sqlite3.Connection) -> None:
        """A passive checkpoint, at most once per :data:`CHECKPOINT_INTERVAL` (after a
        commit, under the hot connection's lock).

        Why not SQLite's default (a checkpoint by the commit that passes 1,000 WAL pages):
        a follower tick rewrites a few thousand pages of the members table and its indexes,
        so nearly every tick paid for a checkpoint, copying again the pages the previous
        ticks wrote. Once a second copies each page once however many ticks wrote it (as
        the log's checkpointer does)."""
        now = time.monotonic()
        if now - self._checkpointed < CHECKPOINT_INTERVAL:
            return
        self._checkpointed = now
        with contextlib.suppress(sqlite3.Error):  # a reader in the way: the next one
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    @staticmethod
    def _stored(conn: sqlite3.Connection, keys: Sequence[tuple[str, str]],
                ) -> dict[tuple[str, str], tuple[bool, list[str]]]:
        """``member`` and ``ids`` of the stored rows among the (segment, person) ``keys``."""
        wanted: dict[str, list[str]] = {}
        for segment_id, person_id in keys:
            wanted.setdefault(segment_id, []).append(person_id)
        found: dict[tuple[str, str], tuple[bool, list[str]]] = {}
        for segment_id, people in wanted.items():
            unique = list(dict.fromkeys(people))
            for start in range(0, len(unique), 500):
                part = unique[start:start + 500]
                marks = ",".join("?" * len(part))
                for pid, member, ids in conn.execute(
                        "SELECT person_id, member, ids FROM members WHERE segment_id = ? AND"
                        f" person_id IN ({marks})", [segment_id, *part]):
                    found[(segment_id, pid)] = (bool(member), list(_ids(ids)))
        return found

    @staticmethod
    def _forget_ids(conn: sqlite3.Connection, keys: Sequence[tuple[str, str]],
                    stored: dict[tuple[str, str], tuple[bool, list[str]]]) -> None:
        conn.executemany("DELETE FROM member_ids WHERE identity = ? AND segment_id = ? AND"
                         " person_id = ?", [(i, s, p) for s, p in keys
                                            for i in stored[(s, p)][1]])

    def rows(self, segment_id: str) -> list[Member]:
        found = self._db.conn().execute(
            "SELECT * FROM members WHERE segment_id = ? ORDER BY person_id", (segment_id,))
        return [_member(r) for r in found]

    def member(self, segment_id: str, person_id: str) -> Member | None:
        row = self._db.conn().execute(
            "SELECT * FROM members WHERE segment_id = ? AND person_id = ?",
            (segment_id, person_id)).fetchone()
        return _member(row) if row else None

    def by_ids(self, ids: Sequence[str]) -> list[Member]:
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        # A join, not a row-value IN (subquery): SQLite would scan every member for that.
        with self._hot() as conn:
            rows = conn.execute(
                "SELECT DISTINCT m.* FROM member_ids i JOIN members m ON m.segment_id ="
                f" i.segment_id AND m.person_id = i.person_id WHERE i.identity IN ({marks})"
                " ORDER BY m.segment_id, m.person_id", list(ids)).fetchall()
        return [_member(r) for r in rows]

    def members(self, segment_id: str, *, after: str | None = None,
                limit: int = 50) -> MembersPage:
        rows = self._db.conn().execute(
            "SELECT * FROM members WHERE segment_id = ? AND member = 1 AND person_id > ?"
            " ORDER BY person_id LIMIT ?", (segment_id, after or "", limit + 1)).fetchall()
        page = [_member(r) for r in rows[:limit]]
        more = len(rows) > limit
        return MembersPage(page, page[-1].person_id if more and page else None)

    def count_members(self, segment_id: str) -> int:
        return self._db.conn().execute(
            "SELECT count(*) FROM members WHERE segment_id = ? AND member = 1",
            (segment_id,)).fetchone()[0]

    def person_segments(self, person_id: str) -> list[Member]:
        rows = self._db.conn().execute(
            "SELECT * FROM members WHERE person_id = ? AND member = 1 ORDER BY segment_id",
            (person_id,))
        return [_member(r) for r in rows]

    def history(self, person_id: str, segment_id: str | None = None) -> list[MembershipChange]:
        rows = self._db.conn().execute(
            "SELECT * FROM history WHERE person_id = ? AND (? IS NULL OR segment_id = ?)"
            " ORDER BY id", (person_id, segment_id, segment_id))
        return [MembershipChange(r["segment_id"], r["person_id"], bool(r["member"]),
                                 r["at_ms"], r["processed_ms"]) for r in rows]

    def history_counts(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """Through ``history_person``: a query per 500 people."""
        counts = dict.fromkeys(keys, 0)
        people = sorted({p for _, p in counts})
        with self._hot() as conn:
            for start in range(0, len(people), 500):
                part = people[start:start + 500]
                marks = ",".join("?" * len(part))
                for sid, pid, n in conn.execute(
                        "SELECT segment_id, person_id, count(*) FROM history"
                        f" WHERE person_id IN ({marks}) GROUP BY person_id, segment_id",
                        part):
                    if (sid, pid) in counts:
                        counts[(sid, pid)] = n
        return counts

    def due(self, now_ms: int, limit: int = 1000) -> list[Member]:
        rows = self._db.conn().execute(
            "SELECT * FROM members WHERE next_change_ms IS NOT NULL AND next_change_ms <= ?"
            " ORDER BY next_change_ms, segment_id, person_id LIMIT ?", (now_ms, limit))
        return [_member(r) for r in rows]

    def next_due(self) -> int | None:
        return self._db.conn().execute(
            "SELECT min(next_change_ms) FROM members WHERE next_change_ms IS NOT NULL"
        ).fetchone()[0]

    def checkpoint(self) -> int:
        row = self._db.conn().execute("SELECT seq FROM position").fetchone()
        return row[0] if row else 0

    def retention_applied(self) -> dict[str, int]:
        return dict(self._db.conn().execute("SELECT source_id, before_ms FROM retention_applied"))

    def set_retention_applied(self, source_id: str, before_ms: int) -> None:
        self._db.conn().execute(
            "INSERT INTO retention_applied VALUES (?, ?) ON CONFLICT (source_id)"
            " DO UPDATE SET before_ms = max(before_ms, excluded.before_ms)",
            (source_id, before_ms))
