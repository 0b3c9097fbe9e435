"""The profile store on PostgreSQL: the same tables and joins as the embedded store
(``storage/sqlite/profiles.py``, whose docstring explains the shape), in a schema of the
state database.

What differs:

- every text column is ``COLLATE "C"``: the trait order ``(t, mid, value, ...)``, the
  people search's prefix ranges and the listing orders compare bytes, as SQLite does, so
  the two backends pick the same winners and list in the same order;
- ``apply_many`` takes a transaction-scoped advisory lock first: profile applies from
  several processes (each process's follower) run one at a time, so the plan each makes
  from what it loaded is still true when it writes;
- ``get`` and ``search`` read in one ``REPEATABLE READ`` snapshot.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from itertools import islice
from typing import Any

from millpond.errors import BadRequest
from millpond.profiles.merge import PROFILE_SCOPE, ClusterFacts, Plan, plan_changes
from millpond.profiles.search import NARROW, normalize, prefix_range, term_changes
from millpond.profiles.shape import profile_views
from millpond.profiles.updates import ProfileUpdate, to_update
from millpond.storage.models import PeoplePage
from millpond.storage.postgres.connection import Conn, PgState

SCHEMA = """
CREATE TABLE IF NOT EXISTS profile_meta (
    key TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS identities (
    id TEXT COLLATE "C" PRIMARY KEY,
    cid BIGINT NOT NULL,
    is_user BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX IF NOT EXISTS identities_by_cid ON identities (cid);
CREATE TABLE IF NOT EXISTS clusters (
    cid BIGINT PRIMARY KEY,
    size BIGINT NOT NULL,
    canon_t DOUBLE PRECISION NOT NULL,
    canon_mid TEXT COLLATE "C" NOT NULL,
    canon TEXT COLLATE "C" NOT NULL,
    uid_t DOUBLE PRECISION,
    uid_mid TEXT COLLATE "C",
    uid TEXT COLLATE "C"
);
CREATE TABLE IF NOT EXISTS traits (
    cid BIGINT NOT NULL,
    gid TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    t DOUBLE PRECISION NOT NULL,
    mid TEXT COLLATE "C" NOT NULL,
    value TEXT COLLATE "C" NOT NULL,
    seq BIGINT,
    source_id TEXT COLLATE "C",
    PRIMARY KEY (cid, gid, name)
);
CREATE TABLE IF NOT EXISTS memberships (
    cid BIGINT NOT NULL,
    gid TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (cid, gid)
);
CREATE TABLE IF NOT EXISTS search_terms (
    term TEXT COLLATE "C" NOT NULL,
    cid BIGINT NOT NULL,
    PRIMARY KEY (term, cid)
);
CREATE INDEX IF NOT EXISTS search_terms_by_cid ON search_terms (cid);
CREATE TABLE IF NOT EXISTS profile_ids (
    pid TEXT COLLATE "C" PRIMARY KEY,
    canon TEXT COLLATE "C" NOT NULL
);
"""

#: The last-writer-wins join of a trait record (see ``sqlite/profiles.py``).
_WINS = (
    " WHERE (excluded.t, excluded.mid, excluded.value, coalesce(excluded.seq, -1),"
    " coalesce(excluded.source_id, '')) > (traits.t, traits.mid, traits.value,"
    " coalesce(traits.seq, -1), coalesce(traits.source_id, ''))"
)
_SET = (
    " ON CONFLICT (cid, gid, name) DO UPDATE SET t = excluded.t, mid = excluded.mid,"
    " value = excluded.value, seq = excluded.seq, source_id = excluded.source_id"
)
_TRAIT_UPSERT = (
    "INSERT INTO traits (cid, gid, name, t, mid, value, seq, source_id)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)" + _SET + _WINS
)
_TRAIT_MOVE = (
    "INSERT INTO traits (cid, gid, name, t, mid, value, seq, source_id)"
    " SELECT %s, gid, name, t, mid, value, seq, source_id FROM traits WHERE cid = %s"
    + _SET + _WINS
)
#: Events planned in memory at once inside ``apply_many`` (bounds memory, not the
#: transaction).
DEFAULT_BATCH_SIZE = 5000
#: Profile applies of every process of the cluster, one at a time (an arbitrary key).
_APPLY_LOCK = 0x6D696C6C706F6E64


class PgProfileStore:
    """:class:`~millpond.storage.contracts.ProfileStore` on PostgreSQL."""

    def __init__(self, db: PgState, *, batch_size: int = DEFAULT_BATCH_SIZE):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._db = db
        self._batch_size = batch_size
        self._lock = threading.Lock()
        db.create_tables(SCHEMA)

    # -- checkpoint ------------------------------------------------------------------------
    def checkpoint(self) -> int:
        row = self._db.execute("SELECT value FROM profile_meta WHERE key = 'checkpoint'"
                               ).fetchone()
        return 0 if row is None else int(row["value"])

    def set_checkpoint(self, seq: int) -> None:
        _set_meta(self._db.conn(), "checkpoint", int(seq))

    # -- writing ---------------------------------------------------------------------------
    def apply_many(self, events: Iterable[Mapping[str, Any]], *,
                   checkpoint: int | None = None) -> int:
        applied = 0
        with self._lock, self._db.transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_APPLY_LOCK,))
            row = conn.execute("SELECT value FROM profile_meta WHERE key = 'next_cid'"
                               ).fetchone()
            next_cid = 1 if row is None else int(row["value"])
            updates = (u for u in map(to_update, events) if u is not None)
            while chunk := list(islice(updates, self._batch_size)):
                applied += len(chunk)
                next_cid = _apply_chunk(conn, chunk, next_cid)
            _set_meta(conn, "next_cid", next_cid)
            if checkpoint is not None:
                _set_meta(conn, "checkpoint", int(checkpoint))
        return applied

    # -- reading ---------------------------------------------------------------------------
    def get(self, any_id: str) -> dict[str, Any] | None:
        with self._db.transaction() as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            row = conn.execute("SELECT cid FROM identities WHERE id = %s", (any_id,)).fetchone()
            if row is None and any_id.startswith("prf_"):
                row = conn.execute("SELECT i.cid FROM profile_ids p JOIN identities i"
                                   " ON i.id = p.canon WHERE p.pid = %s", (any_id,)).fetchone()
            return None if row is None else _view(conn, row["cid"])

    def get_many(self, any_ids: Sequence[str]) -> dict[str, dict[str, Any] | None]:
        """One snapshot; the ids' clusters in two queries, each profile read once."""
        ids = list(dict.fromkeys(any_ids))
        with self._db.transaction() as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cids: dict[str, int] = {r["id"]: r["cid"] for r in conn.execute(
                "SELECT id, cid FROM identities WHERE id = ANY(%s)", (ids,))}
            profile_ids = [i for i in ids if i not in cids and i.startswith("prf_")]
            if profile_ids:
                cids.update({r["pid"]: r["cid"] for r in conn.execute(
                    "SELECT p.pid, i.cid FROM profile_ids p JOIN identities i"
                    " ON i.id = p.canon WHERE p.pid = ANY(%s)", (profile_ids,))})
            views = _views(conn, list(set(cids.values())))
        return {any_id: views[cids[any_id]] if any_id in cids else None
                for any_id in any_ids}

    def search(self, query: str, *, after: str | None = None, limit: int = 50) -> PeoplePage:
        if after is not None and not after.isdigit():
            raise BadRequest("cursor must be a value returned as next_cursor", field="cursor")
        start = int(after or 0)
        q = normalize(query)
        with self._db.transaction() as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            if q:
                cids = _matching(conn, q, start, limit + 1)
            else:
                cids = [r["cid"] for r in conn.execute(
                    "SELECT cid FROM clusters WHERE cid > %s ORDER BY cid LIMIT %s",
                    (start, limit + 1))]
            views = _views(conn, cids[:limit])
            people = [views[cid] for cid in cids[:limit]]
        more = len(cids) > limit
        return PeoplePage(people, str(cids[limit - 1]) if more and limit else None)


def _set_meta(conn: Conn, key: str, value: int) -> None:
    conn.execute("INSERT INTO profile_meta (key, value) VALUES (%s, %s)"
                 " ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))


def _apply_chunk(conn: Conn, chunk: list[ProfileUpdate], next_cid: int) -> int:
    names = list({identity for update in chunk for identity in update.ids})
    known: dict[str, tuple[int, int]] = {
        r["id"]: (r["cid"], int(r["is_user"])) for r in conn.execute(
            "SELECT id, cid, is_user FROM identities WHERE id = ANY(%s)", (names,))}
    facts: dict[int, ClusterFacts] = {}
    for r in conn.execute(
            "SELECT cid, size, canon_t, canon_mid, canon, uid_t, uid_mid, uid FROM clusters"
            " WHERE cid = ANY(%s)", (list({cid for cid, _ in known.values()}),)):
        facts[r["cid"]] = ClusterFacts(
            r["size"], (r["canon_t"], r["canon_mid"], r["canon"]),
            None if r["uid"] is None else (r["uid_t"], r["uid_mid"], r["uid"]))
    plan, counter = plan_changes(chunk, known, facts, next_cid)
    _write_plan(conn, plan)
    return counter


def _write_plan(conn: Conn, plan: Plan) -> None:
    with conn.cursor() as cur:
        for old, survivor in plan.absorbed:
            cur.execute("UPDATE identities SET cid = %s WHERE cid = %s", (survivor, old))
            cur.execute(_TRAIT_MOVE, (survivor, old))
            cur.execute("DELETE FROM traits WHERE cid = %s", (old,))
            cur.execute("INSERT INTO memberships (cid, gid) SELECT %s, gid FROM memberships"
                        " WHERE cid = %s ON CONFLICT DO NOTHING", (survivor, old))
            cur.execute("DELETE FROM memberships WHERE cid = %s", (old,))
            cur.execute("DELETE FROM clusters WHERE cid = %s", (old,))
        if plan.new_identities:
            cur.executemany("INSERT INTO identities (id, cid, is_user) VALUES (%s, %s, %s)",
                            [(i, c, bool(u)) for i, c, u in plan.new_identities])
        if plan.promoted_users:
            cur.execute("UPDATE identities SET is_user = TRUE WHERE id = ANY(%s)",
                        (list(plan.promoted_users),))
        if plan.clusters:
            cur.executemany(
                "INSERT INTO clusters (cid, size, canon_t, canon_mid, canon, uid_t, uid_mid,"
                " uid) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (cid) DO UPDATE SET"
                " size = excluded.size, canon_t = excluded.canon_t,"
                " canon_mid = excluded.canon_mid, canon = excluded.canon,"
                " uid_t = excluded.uid_t, uid_mid = excluded.uid_mid, uid = excluded.uid",
                [(cid, f.size, *f.canon, *(f.uid if f.uid is not None else (None,) * 3))
                 for cid, f in plan.clusters.items()])
        if plan.profile_ids:
            cur.executemany("INSERT INTO profile_ids (pid, canon) VALUES (%s, %s)"
                            " ON CONFLICT DO NOTHING", plan.profile_ids)
        if plan.traits:
            cur.executemany(_TRAIT_UPSERT, [
                (cid, gid, name, t, mid, value, None if seq < 0 else seq, source_id or None)
                for (cid, gid, name), (t, mid, value, seq, source_id)
                in sorted(plan.traits.items())])
        if plan.memberships:
            cur.executemany("INSERT INTO memberships (cid, gid) VALUES (%s, %s)"
                            " ON CONFLICT DO NOTHING", sorted(plan.memberships))
    touched = {cid for old, survivor in plan.absorbed for cid in (old, survivor)}
    touched.update(cid for _identity, cid, _is_user in plan.new_identities)
    touched.update(cid for cid, gid, _name in plan.traits if gid == PROFILE_SCOPE)
    reindex_terms(conn, touched)


def reindex_terms(conn: Conn, cids: Iterable[int]) -> None:
    """The search terms of clusters ``cids`` brought in line with their identities and
    traits (see ``sqlite/profiles.py``: only the difference is written)."""
    part = sorted(set(cids))
    if not part:
        return
    ids: dict[int, list[str]] = {}
    for r in conn.execute("SELECT id, cid FROM identities WHERE cid = ANY(%s)", (part,)):
        ids.setdefault(r["cid"], []).append(r["id"])
    traits: dict[int, list[tuple[str, str, str]]] = {}
    for r in conn.execute("SELECT cid, name, value FROM traits WHERE cid = ANY(%s)"
                          " AND gid = %s", (part, PROFILE_SCOPE)):
        traits.setdefault(r["cid"], []).append((PROFILE_SCOPE, r["name"], r["value"]))
    old = {(r["term"], r["cid"]) for r in conn.execute(
        "SELECT term, cid FROM search_terms WHERE cid = ANY(%s)", (part,))}
    gone, new = term_changes(ids, traits, old)
    with conn.cursor() as cur:
        if gone:
            cur.executemany("DELETE FROM search_terms WHERE term = %s AND cid = %s", gone)
        if new:
            cur.executemany("INSERT INTO search_terms (term, cid) VALUES (%s, %s)", new)


def _matching(conn: Conn, query: str, after: int, limit: int) -> list[int]:
    """As ``sqlite/profiles.py``: a narrow query reads its term range and sorts, a broad
    one walks the clusters in order."""
    low, high = prefix_range(query)
    found = conn.execute("SELECT cid FROM search_terms WHERE term >= %s AND term < %s"
                         " AND cid > %s LIMIT %s", (low, high, after, NARROW + 1)).fetchall()
    if len(found) <= NARROW:
        return sorted({r["cid"] for r in found})[:limit]
    return [r["cid"] for r in conn.execute(
        "SELECT DISTINCT cid FROM search_terms WHERE cid > %s AND term >= %s AND term < %s"
        " ORDER BY cid LIMIT %s", (after, low, high, limit))]


def _view(conn: Conn, cid: int) -> dict[str, Any]:
    return _views(conn, [cid])[cid]


def _views(conn: Conn, cids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The profiles of ``cids`` in four queries (:func:`profile_views`), not four each."""
    wanted = (list(cids),)
    return profile_views(
        ((r["cid"], r["canon"], r["uid"]) for r in conn.execute(
            "SELECT cid, canon, uid FROM clusters WHERE cid = ANY(%s)", wanted)),
        ((r["cid"], r["id"], bool(r["is_user"])) for r in conn.execute(
            "SELECT cid, id, is_user FROM identities WHERE cid = ANY(%s) ORDER BY cid, id",
            wanted)),
        ((r["cid"], r["gid"]) for r in conn.execute(
            "SELECT cid, gid FROM memberships WHERE cid = ANY(%s) ORDER BY cid, gid", wanted)),
        ((r["cid"], r["gid"], r["name"], r["t"], r["mid"], r["value"], r["seq"],
          r["source_id"]) for r in conn.execute(
            "SELECT cid, gid, name, t, mid, value, seq, source_id FROM traits"
            " WHERE cid = ANY(%s) ORDER BY cid, gid, name", wanted)))
