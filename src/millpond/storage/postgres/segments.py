"""Segments and memberships on PostgreSQL: the embedded store's tables
(``storage/sqlite/segments.py``) in the state database's schema, with the same apply
(worked out by :mod:`millpond.storage.segment_rows`).

Text columns are ``COLLATE "C"``: member pages are cursored by person id, and byte order
makes the cursor and the listing agree with the embedded store's. An apply takes a
transaction-scoped advisory lock, so two processes' engines never compare their rows with
a state the other is replacing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import msgspec
import psycopg

from millpond.errors import Conflict, NotFound
from millpond.storage.models import Member, MembershipChange, MembersPage, Segment
from millpond.storage.postgres.connection import Conn, PgState, constraint_of
from millpond.storage.segment_rows import Key, Stored, plan_apply, replaced

SCHEMA = """
CREATE TABLE IF NOT EXISTS segments (
    id TEXT COLLATE "C" PRIMARY KEY,
    key TEXT COLLATE "C" NOT NULL UNIQUE,
    record TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS members (
    segment_id TEXT COLLATE "C" NOT NULL REFERENCES segments(id) ON DELETE CASCADE,
    person_id TEXT COLLATE "C" NOT NULL,
    member BOOLEAN NOT NULL,
    since_ms BIGINT,
    next_change_ms BIGINT,
    user_id TEXT,
    anonymous_id TEXT,
    ids TEXT NOT NULL,
    processed_ms BIGINT NOT NULL,
    PRIMARY KEY (segment_id, person_id)
);
CREATE INDEX IF NOT EXISTS members_current ON members(segment_id, member, person_id);
CREATE INDEX IF NOT EXISTS members_person ON members(person_id, member);
CREATE INDEX IF NOT EXISTS members_due ON members(next_change_ms)
    WHERE next_change_ms IS NOT NULL;
CREATE TABLE IF NOT EXISTS member_ids (
    identity TEXT COLLATE "C" NOT NULL,
    segment_id TEXT COLLATE "C" NOT NULL,
    person_id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (identity, segment_id, person_id)
);
CREATE TABLE IF NOT EXISTS history (
    id BIGSERIAL PRIMARY KEY,
    segment_id TEXT COLLATE "C" NOT NULL REFERENCES segments(id) ON DELETE CASCADE,
    person_id TEXT COLLATE "C" NOT NULL,
    member BOOLEAN NOT NULL,
    at_ms BIGINT,
    processed_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_person ON history(person_id, id);
CREATE TABLE IF NOT EXISTS segments_position (
    one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    seq BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS segments_retention_applied (
    source_id TEXT PRIMARY KEY,
    before_ms BIGINT NOT NULL
);
"""

#: Segment applies of every process of the cluster, one at a time (an arbitrary key).
_APPLY_LOCK = 0x7365676D656E7473

_decode = msgspec.json.Decoder(Segment).decode


def _member(row: dict[str, Any]) -> Member:
    return Member(row["segment_id"], row["person_id"], row["member"], row["since_ms"],
                  row["next_change_ms"], row["user_id"], row["anonymous_id"],
                  tuple(json.loads(row["ids"])), row["processed_ms"])


def _conflict(exc: psycopg.errors.UniqueViolation, segment: Segment) -> Conflict:
    if constraint_of(exc) == "segments_key_key":
        return Conflict(f"a segment with key {segment.key!r} already exists", field="key")
    return Conflict(f"a segment with id {segment.id!r} already exists", field="id")


class PgSegmentStore:
    """:class:`~millpond.storage.contracts.SegmentStore` on PostgreSQL."""

    def __init__(self, db: PgState):
        self._db = db
        db.create_tables(SCHEMA)

    # -- definitions --------------------------------------------------------------------
    def create(self, segment: Segment) -> Segment:
        try:
            self._db.execute("INSERT INTO segments (id, key, record, created_ms)"
                             " VALUES (%s, %s, %s, %s)",
                             (segment.id, segment.key, msgspec.json.encode(segment).decode(),
                              segment.created_ms))
        except psycopg.errors.UniqueViolation as exc:
            raise _conflict(exc, segment) from None
        return segment

    def get(self, ref: str) -> Segment:
        row = self._db.execute("SELECT record FROM segments WHERE id = %s OR key = %s"
                               " ORDER BY (id = %s) DESC LIMIT 1", (ref, ref, ref)).fetchone()
        if row is None:
            raise NotFound(f"no segment {ref!r}", field="segment")
        return _decode(row["record"])

    def list(self) -> list[Segment]:
        return [_decode(r["record"]) for r in self._db.execute(
            "SELECT record FROM segments ORDER BY created_ms, id")]

    def update(self, segment: Segment) -> Segment:
        try:
            cur = self._db.execute("UPDATE segments SET key = %s, record = %s WHERE id = %s",
                                   (segment.key, msgspec.json.encode(segment).decode(),
                                    segment.id))
        except psycopg.errors.UniqueViolation as exc:
            raise _conflict(exc, segment) from None
        if cur.rowcount == 0:
            raise NotFound(f"no segment {segment.id!r}", field="segment")
        return segment

    def delete(self, segment_id: str) -> Segment:
        with self._db.transaction() as conn:
            row = conn.execute("DELETE FROM segments WHERE id = %s RETURNING record",
                               (segment_id,)).fetchone()
            if row is None:
                raise NotFound(f"no segment {segment_id!r}", field="segment")
            conn.execute("DELETE FROM member_ids WHERE segment_id = %s", (segment_id,))
        return _decode(row["record"])

    # -- memberships ----------------------------------------------------------------------
    def apply(self, rows: Sequence[Member], *, drop: Sequence[tuple[str, str]] = (),
              checkpoint: int | None = None) -> list[MembershipChange]:
        with self._db.transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_APPLY_LOCK,))
            known = {r["id"] for r in conn.execute("SELECT id FROM segments")}
            rows = [r for r in rows if r.segment_id in known]
            stored = _stored(conn, [*drop, *((r.segment_id, r.person_id) for r in rows)])
            plan = plan_apply(rows, drop, stored)
            with conn.cursor() as cur:
                _forget_ids(cur, plan.gone, stored)
                if plan.gone:
                    cur.executemany("DELETE FROM members WHERE segment_id = %s"
                                    " AND person_id = %s", plan.gone)
                if plan.added:
                    cur.executemany("INSERT INTO history (segment_id, person_id, member, at_ms,"
                                    " processed_ms) VALUES (%s, %s, %s, %s, %s)",
                                    [(c.segment_id, c.person_id, c.member, c.at_ms,
                                      c.processed_ms) for c in plan.added])
                _forget_ids(cur, replaced(plan, stored), stored)
                if plan.latest:
                    cur.executemany(
                        "INSERT INTO members (segment_id, person_id, member, since_ms,"
                        " next_change_ms, user_id, anonymous_id, ids, processed_ms) VALUES"
                        " (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (segment_id,"
                        " person_id) DO UPDATE SET member = excluded.member,"
                        " since_ms = excluded.since_ms, next_change_ms = excluded.next_change_ms,"
                        " user_id = excluded.user_id, anonymous_id = excluded.anonymous_id,"
                        " ids = excluded.ids, processed_ms = excluded.processed_ms",
                        [(r.segment_id, r.person_id, r.member, r.since_ms, r.next_change_ms,
                          r.user_id, r.anonymous_id, json.dumps(list(r.ids)), r.processed_ms)
                         for r in plan.latest.values()])
                    ids = [(i, r.segment_id, r.person_id) for r in plan.latest.values()
                           for i in r.ids]
                    if ids:
                        cur.executemany("INSERT INTO member_ids VALUES (%s, %s, %s)"
                                        " ON CONFLICT DO NOTHING", ids)
            if checkpoint is not None:
                conn.execute("INSERT INTO segments_position (seq) VALUES (%s) ON CONFLICT"
                             " (one) DO UPDATE SET seq = excluded.seq", (checkpoint,))
        return plan.added

    def rows(self, segment_id: str) -> list[Member]:
        return [_member(r) for r in self._db.execute(
            "SELECT * FROM members WHERE segment_id = %s ORDER BY person_id", (segment_id,))]

    def member(self, segment_id: str, person_id: str) -> Member | None:
        row = self._db.execute("SELECT * FROM members WHERE segment_id = %s AND person_id = %s",
                               (segment_id, person_id)).fetchone()
        return None if row is None else _member(row)

    def by_ids(self, ids: Sequence[str]) -> list[Member]:
        if not ids:
            return []
        return [_member(r) for r in self._db.execute(
            "SELECT DISTINCT m.* FROM member_ids i JOIN members m ON m.segment_id ="
            " i.segment_id AND m.person_id = i.person_id WHERE i.identity = ANY(%s)"
            " ORDER BY m.segment_id, m.person_id", (list(ids),))]

    def members(self, segment_id: str, *, after: str | None = None,
                limit: int = 50) -> MembersPage:
        rows = self._db.execute(
            "SELECT * FROM members WHERE segment_id = %s AND member AND person_id > %s"
            " ORDER BY person_id LIMIT %s", (segment_id, after or "", limit + 1)).fetchall()
        page = [_member(r) for r in rows[:limit]]
        more = len(rows) > limit
        return MembersPage(page, page[-1].person_id if more and page else None)

    def count_members(self, segment_id: str) -> int:
        row = self._db.execute("SELECT count(*) AS n FROM members WHERE segment_id = %s"
                               " AND member", (segment_id,)).fetchone()
        return 0 if row is None else int(row["n"])

    def person_segments(self, person_id: str) -> list[Member]:
        return [_member(r) for r in self._db.execute(
            "SELECT * FROM members WHERE person_id = %s AND member ORDER BY segment_id",
            (person_id,))]

    def history(self, person_id: str, segment_id: str | None = None) -> list[MembershipChange]:
        rows = self._db.execute(
            "SELECT * FROM history WHERE person_id = %(p)s"
            " AND (%(s)s::text IS NULL OR segment_id = %(s)s) ORDER BY id",
            {"p": person_id, "s": segment_id})
        return [MembershipChange(r["segment_id"], r["person_id"], r["member"], r["at_ms"],
                                 r["processed_ms"]) for r in rows]

    def history_counts(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        counts = dict.fromkeys(keys, 0)
        if counts:
            for r in self._db.execute(
                    "SELECT segment_id, person_id, count(*) AS n FROM history"
                    " WHERE person_id = ANY(%s) GROUP BY person_id, segment_id",
                    (sorted({p for _, p in counts}),)):
                if (r["segment_id"], r["person_id"]) in counts:
                    counts[(r["segment_id"], r["person_id"])] = int(r["n"])
        return counts

    def due(self, now_ms: int, limit: int = 1000) -> list[Member]:
        return [_member(r) for r in self._db.execute(
            "SELECT * FROM members WHERE next_change_ms IS NOT NULL AND next_change_ms <= %s"
            " ORDER BY next_change_ms, segment_id, person_id LIMIT %s", (now_ms, limit))]

    def next_due(self) -> int | None:
        row = self._db.execute("SELECT min(next_change_ms) AS n FROM members"
                               " WHERE next_change_ms IS NOT NULL").fetchone()
        return None if row is None or row["n"] is None else int(row["n"])

    def checkpoint(self) -> int:
        row = self._db.execute("SELECT seq FROM segments_position").fetchone()
        return 0 if row is None else int(row["seq"])

    def retention_applied(self) -> dict[str, int]:
        return {r["source_id"]: int(r["before_ms"]) for r in self._db.execute(
            "SELECT source_id, before_ms FROM segments_retention_applied").fetchall()}

    def set_retention_applied(self, source_id: str, before_ms: int) -> None:
        self._db.execute(
            "INSERT INTO segments_retention_applied VALUES (%s, %s) ON CONFLICT (source_id)"
            " DO UPDATE SET before_ms = GREATEST(segments_retention_applied.before_ms,"
            " excluded.before_ms)", (source_id, before_ms))


def _stored(conn: Conn, keys: Sequence[Key]) -> dict[Key, Stored]:
    """``member`` and ``ids`` of the stored rows among the (segment, person) ``keys``."""
    if not keys:
        return {}
    rows = conn.execute(
        "SELECT m.segment_id, m.person_id, m.member, m.ids FROM members m JOIN"
        " unnest(%s::text[], %s::text[]) AS k(segment_id, person_id)"
        " ON m.segment_id = k.segment_id AND m.person_id = k.person_id",
        ([k[0] for k in keys], [k[1] for k in keys]))
    return {(r["segment_id"], r["person_id"]): (r["member"], json.loads(r["ids"]))
            for r in rows}


def _forget_ids(cur: psycopg.Cursor[Any], keys: Sequence[Key],
                stored: dict[Key, Stored]) -> None:
    gone = [(i, s, p) for s, p in keys for i in stored[(s, p)][1]]
    if gone:
        cur.executemany("DELETE FROM member_ids WHERE identity = %s AND segment_id = %s"
                        " AND person_id = %s", gone)
