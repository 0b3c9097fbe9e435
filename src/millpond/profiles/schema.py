"""SQLite schema and connection settings of the profile store.

Why this shape (see :mod:`.store` for the rules it implements):

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
- ``meta`` holds the follower checkpoint and the cluster-number counter, in the same database so
  they commit atomically with the data.

All tables but ``clusters`` are ``WITHOUT ROWID``: they are looked up only by their composite
keys, and clustering the rows on those keys makes per-profile reads one range scan.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

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

CREATE TABLE IF NOT EXISTS profile_ids (
    pid TEXT PRIMARY KEY,
    canon TEXT NOT NULL
) WITHOUT ROWID;
"""


def connect(path: str | Path) -> sqlite3.Connection:
    """Open ``path`` in autocommit mode with the pragmas the store relies on.

    Autocommit (``isolation_level=None``) because the store issues its own ``BEGIN IMMEDIATE``:
    the write lock is taken up front, so a bulk apply never fails half-way on lock upgrade.
    ``synchronous=NORMAL`` in WAL mode can lose the last commits on power loss but never
    corrupts; the checkpoint lives in the same database and rolls back with the data, so a
    follower simply re-applies from the log (re-applying is a no-op by design).
    """
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.execute("PRAGMA cache_size=-65536")  # 64 MiB: bulk merges touch many pages
    conn.execute("PRAGMA temp_store=MEMORY")
    return conn


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the tables if missing and refuse a database written by a newer schema."""
    conn.execute("BEGIN IMMEDIATE")
    try:
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
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
