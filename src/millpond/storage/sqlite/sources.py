"""Sources in ``state.db``: one row each; names and write keys unique."""

from __future__ import annotations

import json
import sqlite3
import time

import msgspec

from millpond.errors import Conflict, NotFound
from millpond.storage.models import Source
from millpond.storage.sqlite.connection import StateDB, immediate, unique_violation

SCHEMA = """
CREATE TABLE IF NOT EXISTS sources (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    write_key TEXT NOT NULL UNIQUE,
    site_id TEXT,
    replayable INTEGER NOT NULL,
    created_at REAL NOT NULL,
    allowed_origins TEXT,
    enabled INTEGER NOT NULL DEFAULT 1,
    retention TEXT NOT NULL DEFAULT 'forever'
);
CREATE INDEX IF NOT EXISTS sources_by_site ON sources(site_id);
-- Tombstones: deleted sources, without the live table's unique names and keys (both
-- may be reused), so that what a deleted source was stays known for its events.
CREATE TABLE IF NOT EXISTS deleted_sources (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    write_key TEXT NOT NULL,
    site_id TEXT,
    replayable INTEGER NOT NULL,
    created_at REAL NOT NULL,
    allowed_origins TEXT,
    enabled INTEGER NOT NULL,
    deleted_at REAL NOT NULL,
    retention TEXT NOT NULL DEFAULT 'forever'
);
"""
#: Columns added after the first release, for data dirs created before them.
_ADDED_COLUMNS = {"allowed_origins": "TEXT", "enabled": "INTEGER NOT NULL DEFAULT 1",
                  "retention": "TEXT NOT NULL DEFAULT 'forever'"}
_COLUMNS = ("id, name, kind, write_key, site_id, replayable, created_at, allowed_origins,"
            " enabled, retention")


def _row(row: sqlite3.Row, deleted_at: float | None = None) -> Source:
    origins = row["allowed_origins"]
    return Source(row["id"], row["name"], row["kind"], row["write_key"],
                  bool(row["replayable"]), row["site_id"], row["created_at"],
                  None if origins is None else tuple(json.loads(origins)),
                  bool(row["enabled"]), deleted_at, row["retention"])


def _values(s: Source) -> tuple[str, str, str, str, str | None, int, float, str | None, int,
                               str]:
    origins = None if s.allowed_origins is None else json.dumps(list(s.allowed_origins))
    return (s.id, s.name, s.kind, s.write_key, s.site_id, int(s.replayable), s.created_at,
            origins, int(s.enabled), s.retention)


def _conflict(exc: Exception, source: Source) -> Exception:
    if unique_violation(exc, "name"):
        return Conflict(f"a source named {source.name!r} already exists", field="name")
    if unique_violation(exc, "id"):
        return Conflict(f"a source with id {source.id!r} already exists", field="id")
    if unique_violation(exc, "write_key"):
        return Conflict("that write key is taken", field="write_key")
    return exc


class SQLiteSourceStore:
    """:class:`~millpond.storage.contracts.SourceStore`; each method one statement."""

    def __init__(self, db: StateDB):
        self._db = db
        db.executescript(SCHEMA)
        for table in ("sources", "deleted_sources"):
            have = db.columns(table)
            for column, decl in _ADDED_COLUMNS.items():
                if column not in have:
                    db.conn().execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")

    def create(self, source: Source) -> Source:
        if self._db.conn().execute("SELECT 1 FROM deleted_sources WHERE id = ?",
                                   (source.id,)).fetchone():
            raise Conflict(f"a source with id {source.id!r} already exists", field="id")
        try:
            self._db.conn().execute(
                f"INSERT INTO sources ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)", _values(source))
        except sqlite3.IntegrityError as exc:
            raise _conflict(exc, source) from None
        return source

    def get(self, ref: str) -> Source:
        row = self._db.conn().execute(
            "SELECT * FROM sources WHERE id = ? OR name = ? ORDER BY id = ? DESC LIMIT 1",
            (ref, ref, ref)).fetchone()
        if row is None:
            raise NotFound(f"no source {ref!r}", field="source")
        return _row(row)

    def by_write_key(self, write_key: str) -> Source | None:
        row = self._db.conn().execute("SELECT * FROM sources WHERE write_key = ?",
                                      (write_key,)).fetchone()
        return None if row is None else _row(row)

    def by_site_id(self, site_id: str) -> Source | None:
        row = self._db.conn().execute(
            "SELECT * FROM sources WHERE site_id = ? AND kind = 'track'", (site_id,)).fetchone()
        return None if row is None else _row(row)

    def list(self) -> list[Source]:
        rows = self._db.conn().execute("SELECT * FROM sources ORDER BY created_at, rowid")
        return [_row(r) for r in rows]

    def update(self, source: Source) -> Source:
        values = _values(source)
        try:
            cur = self._db.conn().execute(
                "UPDATE sources SET name = ?, kind = ?, write_key = ?, site_id = ?,"
                " replayable = ?, created_at = ?, allowed_origins = ?, enabled = ?, retention = ?"
                " WHERE id = ?", (*values[1:], source.id))
        except sqlite3.IntegrityError as exc:
            raise _conflict(exc, source) from None
        if cur.rowcount == 0:
            raise NotFound(f"no source {source.id!r}", field="source")
        return source

    def delete(self, source_id: str) -> Source:
        source = self.get(source_id)
        if source.id != source_id:
            raise NotFound(f"no source {source_id!r}", field="source")
        tombstone = msgspec.structs.replace(source, deleted_at=time.time())
        with immediate(self._db.conn()) as conn:
            cur = conn.execute("DELETE FROM sources WHERE id = ?", (source_id,))
            if cur.rowcount == 0:
                raise NotFound(f"no source {source_id!r}", field="source")
            conn.execute(f"INSERT INTO deleted_sources ({_COLUMNS}, deleted_at)"
                         " VALUES (?,?,?,?,?,?,?,?,?,?,?)", (*_values(tombstone),
                                                            tombstone.deleted_at))
        return tombstone

    def deleted(self) -> list[Source]:
        rows = self._db.conn().execute("SELECT * FROM deleted_sources"
                                       " ORDER BY deleted_at, rowid")
        return [_row(r, r["deleted_at"]) for r in rows]
