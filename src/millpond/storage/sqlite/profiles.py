"""The profile store on SQLite: ``profiles.db``, its own file (WAL).

The rules it keeps are in :mod:`millpond.profiles`; the planning is pure
(:mod:`millpond.profiles.merge`); this module loads what a plan needs and writes the plan
back with the same joins expressed in SQL.

Why this shape:

- ``identities`` maps every id (user or anonymous; one namespace, since ``get`` takes "any id")
  to its cluster. It is a union-find flattened to depth one: each row points straight at its
  cluster's number, so resolving any id is one primary-key lookup, and a merge relabels the
  smaller cluster (union by size keeps the total relabelling work O(n log n)). The ``cid`` index
  serves both that relabel and listing a profile's ids.
- ``traits`` keeps only the last-writer-wins *winner* per (cluster, scope, trait), including
  winners whose value is JSON ``null`` (tombstones). Keeping only winners is enough because
  clusters never split: the winner of a merged cluster is the max of the two winners. ``gid`` is
  ``''`` for profile traits and the group id for group traits (group ids are never empty).
- ``clusters`` holds the per-profile facts that are themselves max/min reductions: size (for
  union by size), the canonical identity behind the public profile id (min), and the chosen
  ``user_id`` (max).
- ``profile_ids`` maps a public profile id back to the identity it was derived from, so a
  profile id handed out once keeps resolving after later merges.
- ``search_terms`` is the people search's index: the terms of each profile
  (:mod:`millpond.profiles.search`: its ids, its trait values and their words, case-folded)
  keyed by (term, cluster), so any prefix query is one range scan. It is rewritten for
  the clusters each apply touches, in the same transaction, so it never disagrees with
  the profiles it indexes.
- ``meta`` holds the follower checkpoint and the cluster-number counter, in the same database so
  they commit atomically with the data.

All tables but ``clusters`` are ``WITHOUT ROWID``: they are looked up only by their composite
keys, and clustering the rows on those keys makes per-profile reads one range scan.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

from millpond.errors import BadRequest
from millpond.profiles.merge import PROFILE_SCOPE, ClusterFacts, Plan, plan_changes
from millpond.profiles.search import NARROW, normalize, prefix_range, term_changes
from millpond.profiles.shape import profile_views
from millpond.profiles.updates import ProfileUpdate, to_update
from millpond.storage.health import StorageHealth
from millpond.storage.models import PeoplePage
from millpond.storage.sqlite.connection import connect as connect_file
from millpond.storage.sqlite.connection import immediate

SCHEMA_VERSION = 1

_DDL = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS identities (
    id TEXT PRIMARY KEY,
    cid INTEGER NOT NULL,
    is_user INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS identities_by_cid ON identities (cid);

CREATE TABLE IF NOT EXISTS clusters (
    cid INTEGER PRIMARY KEY,
    size INTEGER NOT NULL,
    canon_t REAL NOT NULL,
    canon_mid TEXT NOT NULL,
    canon TEXT NOT NULL,
    uid_t REAL,
    uid_mid TEXT,
    uid TEXT
);

CREATE TABLE IF NOT EXISTS traits (
    cid INTEGER NOT NULL,
    gid TEXT NOT NULL,
    name TEXT NOT NULL,
    t REAL NOT NULL,
    mid TEXT NOT NULL,
    value TEXT NOT NULL,
    seq INTEGER,
    source_id TEXT,
    PRIMARY KEY (cid, gid, name)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS memberships (
    cid INTEGER NOT NULL,
    gid TEXT NOT NULL,
    PRIMARY KEY (cid, gid)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS search_terms (
    term TEXT NOT NULL,
    cid INTEGER NOT NULL,
    PRIMARY KEY (term, cid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS search_terms_by_cid ON search_terms (cid);

CREATE TABLE IF NOT EXISTS profile_ids (
    pid TEXT PRIMARY KEY,
    canon TEXT NOT NULL
) WITHOUT ROWID;
"""


def connect(path: str | Path, health: StorageHealth | None = None) -> sqlite3.Connection:
    """Open ``path`` in autocommit mode with the pragmas the store relies on.

    Autocommit (``isolation_level=None``) because the store issues its own ``BEGIN IMMEDIATE``:
    the write lock is taken up front, so a bulk apply never fails half-way on lock upgrade.
    ``synchronous=NORMAL`` in WAL mode can lose the last commits on power loss but never
    corrupts; the checkpoint lives in the same database and rolls back with the data, so a
    follower simply re-applies from the log (re-applying is a no-op by design).
    """
    # 64 MiB of cache: bulk merges touch many pages
    conn = connect_file(path, "NORMAL", cache_kib=65536, health=health)
    conn.execute("PRAGMA foreign_keys=OFF")
    return conn


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the tables if missing and refuse a database written by a newer schema."""
    with immediate(conn):
        for statement in _DDL.split(";"):
            if statement.strip():
                conn.execute(statement)
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
            )
        elif int(row[0]) > SCHEMA_VERSION:
            raise RuntimeError(
                f"profiles database has schema version {row[0]}, this millpond understands "
                f"up to {SCHEMA_VERSION}; upgrade millpond"
            )
        if conn.execute("SELECT 1 FROM meta WHERE key = 'search_terms'").fetchone() is None:
            # A store written before the people search: index every profile once.
            cids = [cid for (cid,) in conn.execute("SELECT cid FROM clusters")]
            reindex_terms(conn, cids)
            conn.execute("INSERT INTO meta (key, value) VALUES ('search_terms', 1)")


def reindex_terms(conn: sqlite3.Connection, cids: Iterable[int]) -> None:
    """Bring the search terms of clusters ``cids`` in line with their identities and
    traits (a cluster absorbed by a merge has neither any more: its terms go).

    Why a difference rather than delete-and-insert: most applies change no term (an
    identify repeated at each login, a trait that lost to a newer one), and then this
    writes nothing; the terms are random keys, so every write is a B-tree page."""
    for part in _chunks(sorted(set(cids)), _IN_CHUNK):
        marks = ",".join("?" * len(part))
        ids: dict[int, list[str]] = {}
        for identity, cid in conn.execute(
            f"SELECT id, cid FROM identities WHERE cid IN ({marks})", part
        ):
            ids.setdefault(cid, []).append(identity)
        traits: dict[int, list[tuple[str, str, str]]] = {}
        for cid, name, value in conn.execute(
            f"SELECT cid, name, value FROM traits WHERE cid IN ({marks}) AND gid = ?",
            (*part, PROFILE_SCOPE),
        ):
            traits.setdefault(cid, []).append((PROFILE_SCOPE, name, value))
        old = set(conn.execute(
            f"SELECT term, cid FROM search_terms WHERE cid IN ({marks})", part))
        gone, new = term_changes(ids, traits, old)
        conn.executemany("DELETE FROM search_terms WHERE term = ? AND cid = ?", gone)
        conn.executemany("INSERT INTO search_terms (term, cid) VALUES (?, ?)", new)


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


DEFAULT_BATCH_SIZE = 5000
_IN_CHUNK = 500  # bound variables per IN (...) query, well under SQLite's limit

_TRAIT_UPSERT = """
INSERT INTO traits (cid, gid, name, t, mid, value, seq, source_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (cid, gid, name) DO UPDATE SET
    t = excluded.t, mid = excluded.mid, value = excluded.value,
    seq = excluded.seq, source_id = excluded.source_id
WHERE (excluded.t, excluded.mid, excluded.value,
       coalesce(excluded.seq, -1), coalesce(excluded.source_id, ''))
    > (traits.t, traits.mid, traits.value,
       coalesce(traits.seq, -1), coalesce(traits.source_id, ''))
"""
# Same join as above, from one stored cluster into another (a merge).
_TRAIT_MOVE = """
INSERT INTO traits (cid, gid, name, t, mid, value, seq, source_id)
SELECT ?, gid, name, t, mid, value, seq, source_id FROM traits WHERE cid = ?
ON CONFLICT (cid, gid, name) DO UPDATE SET
    t = excluded.t, mid = excluded.mid, value = excluded.value,
    seq = excluded.seq, source_id = excluded.source_id
WHERE (excluded.t, excluded.mid, excluded.value,
       coalesce(excluded.seq, -1), coalesce(excluded.source_id, ''))
    > (traits.t, traits.mid, traits.value,
       coalesce(traits.seq, -1), coalesce(traits.source_id, ''))
"""


class SQLiteProfileStore:
    """:class:`~millpond.storage.contracts.ProfileStore` in one SQLite database file (WAL),
    safe to share between threads.

    One connection writes (``apply_many``, ``set_checkpoint``), another reads (``get``,
    ``checkpoint``), so a long bulk apply does not block lookups: readers see the last
    committed state.
    """

    def __init__(self, path: str | Path, *, batch_size: int = DEFAULT_BATCH_SIZE,
                 health: StorageHealth | None = None) -> None:
        """Open (creating if needed) the store at ``path``.

        ``batch_size`` is how many events are planned in memory at once inside
        ``apply_many``; it bounds memory for arbitrarily long inputs, not the transaction.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.path = Path(path)
        self._batch_size = batch_size
        self._write = connect(self.path, health)
        ensure_schema(self._write)
        self._read = connect(self.path)
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close both connections; further calls fail. Safe to call twice."""
        if self._closed:
            return
        with self._write_lock, self._read_lock:
            self._closed = True
            self._read.close()
            self._write.close()

    def __enter__(self) -> SQLiteProfileStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- checkpoint ------------------------------------------------------------------------

    def checkpoint(self) -> int:
        """Last log ``seq`` recorded with :meth:`set_checkpoint` (0 if none)."""
        with self._read_lock:
            row = self._read.execute("SELECT value FROM meta WHERE key = 'checkpoint'").fetchone()
        return 0 if row is None else int(row[0])

    def set_checkpoint(self, seq: int) -> None:
        """Record ``seq`` as the last log position applied (it may move backwards: a re-sync)."""
        with self._write_lock:
            self._write.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('checkpoint', ?)", (int(seq),)
            )

    # -- writing ---------------------------------------------------------------------------

    def apply_many(self, events: Iterable[Mapping[str, Any]], *,
                   checkpoint: int | None = None) -> int:
        """Apply events in one transaction; return how many were profile-relevant.

        Irrelevant events (track, page, ..., or without any id) are skipped and not counted.
        Re-applied events are counted but change nothing. ``checkpoint``, if given, is stored in
        the same transaction, so a follower's position can never run ahead of its data.
        """
        applied = 0
        with self._write_lock:
            conn = self._write
            with immediate(conn):
                next_cid = self._load_next_cid(conn)
                updates = (u for u in map(to_update, events) if u is not None)
                while chunk := list(islice(updates, self._batch_size)):
                    applied += len(chunk)
                    next_cid = self._apply_chunk(conn, chunk, next_cid)
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('next_cid', ?)", (next_cid,)
                )
                if checkpoint is not None:
                    conn.execute(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES ('checkpoint', ?)",
                        (int(checkpoint),),
                    )
        return applied

    @staticmethod
    def _load_next_cid(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT value FROM meta WHERE key = 'next_cid'").fetchone()
        return 1 if row is None else int(row[0])

    def _apply_chunk(
        self, conn: sqlite3.Connection, chunk: list[ProfileUpdate], next_cid: int
    ) -> int:
        names = list({identity for update in chunk for identity in update.ids})
        known: dict[str, tuple[int, int]] = {}
        for part in _chunks(names, _IN_CHUNK):
            marks = ",".join("?" * len(part))
            for identity, cid, is_user in conn.execute(
                f"SELECT id, cid, is_user FROM identities WHERE id IN ({marks})", part
            ):
                known[identity] = (cid, is_user)
        facts: dict[int, ClusterFacts] = {}
        for part in _chunks(list({cid for cid, _ in known.values()}), _IN_CHUNK):
            marks = ",".join("?" * len(part))
            for cid, size, ct, cmid, canon, ut, umid, uid in conn.execute(
                "SELECT cid, size, canon_t, canon_mid, canon, uid_t, uid_mid, uid"
                f" FROM clusters WHERE cid IN ({marks})",
                part,
            ):
                facts[cid] = ClusterFacts(
                    size, (ct, cmid, canon), None if uid is None else (ut, umid, uid)
                )

        plan, counter = plan_changes(chunk, known, facts, next_cid)
        self._write_plan(conn, plan)
        return counter

    @staticmethod
    def _write_plan(conn: sqlite3.Connection, plan: Plan) -> None:
        for old, survivor in plan.absorbed:
            conn.execute("UPDATE identities SET cid = ? WHERE cid = ?", (survivor, old))
            conn.execute(_TRAIT_MOVE, (survivor, old))
            conn.execute("DELETE FROM traits WHERE cid = ?", (old,))
            conn.execute(
                "INSERT OR IGNORE INTO memberships (cid, gid)"
                " SELECT ?, gid FROM memberships WHERE cid = ?",
                (survivor, old),
            )
            conn.execute("DELETE FROM memberships WHERE cid = ?", (old,))
            conn.execute("DELETE FROM clusters WHERE cid = ?", (old,))
        conn.executemany(
            "INSERT INTO identities (id, cid, is_user) VALUES (?, ?, ?)", plan.new_identities
        )
        conn.executemany(
            "UPDATE identities SET is_user = 1 WHERE id = ?", [(i,) for i in plan.promoted_users]
        )
        conn.executemany(
            "INSERT OR REPLACE INTO clusters"
            " (cid, size, canon_t, canon_mid, canon, uid_t, uid_mid, uid)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (cid, f.size, *f.canon, *(f.uid if f.uid is not None else (None, None, None)))
                for cid, f in plan.clusters.items()
            ],
        )
        conn.executemany(
            "INSERT OR IGNORE INTO profile_ids (pid, canon) VALUES (?, ?)", plan.profile_ids
        )
        conn.executemany(
            _TRAIT_UPSERT,
            [
                (cid, gid, name, t, mid, value, None if seq < 0 else seq, source_id or None)
                for (cid, gid, name), (t, mid, value, seq, source_id) in plan.traits.items()
            ],
        )
        conn.executemany(
            "INSERT OR IGNORE INTO memberships (cid, gid) VALUES (?, ?)", plan.memberships
        )
        touched = {cid for old, survivor in plan.absorbed for cid in (old, survivor)}
        touched.update(cid for _identity, cid, _is_user in plan.new_identities)
        touched.update(cid for cid, gid, _name in plan.traits if gid == PROFILE_SCOPE)
        reindex_terms(conn, touched)

    # -- reading ---------------------------------------------------------------------------

    def get(self, any_id: str) -> dict[str, Any] | None:
        """The profile that ``any_id`` (user id, anonymous id or profile id) belongs to.

        Returns ``{"id", "user_id", "user_ids", "anonymous_ids", "traits", "trait_times",
        "trait_sources", "cleared_traits", "groups"}`` or ``None`` if the id is unknown. Read in
        one snapshot, so a concurrent apply is seen entirely or not at all.
        """
        with self._read_lock:
            conn = self._read
            conn.execute("BEGIN")
            try:
                return self._get(conn, any_id)
            finally:
                conn.execute("COMMIT")

    def get_many(self, any_ids: Sequence[str]) -> dict[str, dict[str, Any] | None]:
        """One snapshot; the ids' clusters and their profiles in a few queries per 500."""
        found: dict[str, dict[str, Any] | None] = {}
        with self._read_lock:
            conn = self._read
            conn.execute("BEGIN")
            try:
                cids = self._cids(conn, list(dict.fromkeys(any_ids)))
                views = self._views(conn, list(dict.fromkeys(cids.values())))
                for any_id in any_ids:
                    cid = cids.get(any_id)
                    found[any_id] = None if cid is None else views[cid]
            finally:
                conn.execute("COMMIT")
        return found

    @staticmethod
    def _cids(conn: sqlite3.Connection, ids: list[str]) -> dict[str, int]:
        """The cluster of each of ``ids`` that has one (user, anonymous or profile id)."""
        cids: dict[str, int] = {}
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]
            marks = ",".join("?" * len(part))
            cids.update(conn.execute(
                f"SELECT id, cid FROM identities WHERE id IN ({marks})", part).fetchall())
            profile_ids = [i for i in part if i not in cids and i.startswith("prf_")]
            if profile_ids:
                marks = ",".join("?" * len(profile_ids))
                cids.update(conn.execute(
                    "SELECT p.pid, i.cid FROM profile_ids p JOIN identities i ON i.id ="
                    f" p.canon WHERE p.pid IN ({marks})", profile_ids).fetchall())
        return cids

    def search(self, query: str, *, after: str | None = None, limit: int = 50) -> PeoplePage:
        """People matching ``query`` (every person when empty), in cluster order; the
        cursor is the last cluster number of the page. Read in one snapshot."""
        if after is not None and not after.isdigit():
            raise BadRequest("cursor must be a value returned as next_cursor", field="cursor")
        start = int(after or 0)
        q = normalize(query)
        with self._read_lock:
            conn = self._read
            conn.execute("BEGIN")
            try:
                if q:
                    cids = self._matching(conn, q, start, limit + 1)
                else:
                    cids = [cid for (cid,) in conn.execute(
                        "SELECT cid FROM clusters WHERE cid > ? ORDER BY cid LIMIT ?",
                        (start, limit + 1))]
                views = self._views(conn, cids[:limit])
                people = [views[cid] for cid in cids[:limit]]
            finally:
                conn.execute("COMMIT")
        more = len(cids) > limit
        return PeoplePage(people, str(cids[limit - 1]) if more and limit else None)

    @staticmethod
    def _matching(conn: sqlite3.Connection, query: str, after: int, limit: int) -> list[int]:
        """The first ``limit`` clusters after ``after`` with a term starting with
        ``query``, in cluster order.

        Two plans, because SQLite cannot tell which is cheap: a narrow query (up to
        :data:`NARROW` matching terms) reads its range of the (term, cid) key and sorts
        what it found; a broad one (``a``) walks the clusters in order through the
        (cid) index and keeps those whose term matches, which finds a page after a few
        hundred entries because matches are dense. (``+cid`` keeps SQLite on the plan
        asked for.)"""
        low, high = prefix_range(query)
        found = conn.execute(
            "SELECT cid FROM search_terms WHERE term >= ? AND term < ? AND +cid > ?"
            " LIMIT ?", (low, high, after, NARROW + 1)).fetchall()
        if len(found) <= NARROW:
            return sorted({cid for (cid,) in found})[:limit]
        return [cid for (cid,) in conn.execute(
            "SELECT DISTINCT cid FROM search_terms INDEXED BY search_terms_by_cid"
            " WHERE cid > ? AND term >= ? AND term < ? ORDER BY cid LIMIT ?",
            (after, low, high, limit))]

    @staticmethod
    def _get(conn: sqlite3.Connection, any_id: str) -> dict[str, Any] | None:
        row = conn.execute("SELECT cid FROM identities WHERE id = ?", (any_id,)).fetchone()
        if row is None and any_id.startswith("prf_"):
            row = conn.execute(
                "SELECT i.cid FROM profile_ids p JOIN identities i ON i.id = p.canon"
                " WHERE p.pid = ?",
                (any_id,),
            ).fetchone()
        if row is None:
            return None
        return SQLiteProfileStore._view(conn, row[0])

    @staticmethod
    def _view(conn: sqlite3.Connection, cid: int) -> dict[str, Any]:
        return SQLiteProfileStore._views(conn, [cid])[cid]

    @staticmethod
    def _views(conn: sqlite3.Connection, cids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """The profiles of ``cids``, four queries per 500 of them (:func:`profile_views`)."""
        views: dict[int, dict[str, Any]] = {}
        for start in range(0, len(cids), 500):
            part = list(cids[start:start + 500])
            marks = ",".join("?" * len(part))
            views.update(profile_views(
                conn.execute(f"SELECT cid, canon, uid FROM clusters WHERE cid IN ({marks})",
                             part),
                conn.execute(f"SELECT cid, id, is_user FROM identities WHERE cid IN ({marks})"
                             " ORDER BY cid, id", part),
                conn.execute(f"SELECT cid, gid FROM memberships WHERE cid IN ({marks})"
                             " ORDER BY cid, gid", part),
                conn.execute("SELECT cid, gid, name, t, mid, value, seq, source_id FROM traits"
                             f" WHERE cid IN ({marks}) ORDER BY cid, gid, name", part)))
        return views
