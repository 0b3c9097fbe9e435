"""Sources on PostgreSQL: one row each, names and write keys unique among live sources,
tombstones in a table of their own (as on the embedded store, see its module)."""

from __future__ import annotations

import json
import time
from typing import Any

import msgspec
import psycopg

from millpond.errors import Conflict, NotFound
from millpond.storage.models import Source
from millpond.storage.postgres.connection import PgState, constraint_of

SCHEMA = """
CREATE TABLE IF NOT EXISTS sources (
    ord BIGSERIAL,
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    write_key TEXT NOT NULL UNIQUE,
    site_id TEXT,
    replayable BOOLEAN NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    allowed_origins TEXT,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    retention TEXT NOT NULL DEFAULT 'forever'
);
CREATE INDEX IF NOT EXISTS sources_by_site ON sources(site_id);
CREATE TABLE IF NOT EXISTS deleted_sources (
    ord BIGSERIAL,
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    write_key TEXT NOT NULL,
    site_id TEXT,
    replayable BOOLEAN NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    allowed_origins TEXT,
    enabled BOOLEAN NOT NULL,
    deleted_at DOUBLE PRECISION NOT NULL,
    retention TEXT NOT NULL DEFAULT 'forever'
);
-- Columns added after the first schema, for databases created before them.
ALTER TABLE sources ADD COLUMN IF NOT EXISTS retention TEXT NOT NULL DEFAULT 'forever';
ALTER TABLE deleted_sources ADD COLUMN IF NOT EXISTS retention TEXT NOT NULL
    DEFAULT 'forever';
"""


def _row(row: dict[str, Any], deleted_at: float | None = None) -> Source:
    origins = row["allowed_origins"]
    return Source(row["id"], row["name"], row["kind"], row["write_key"], row["replayable"],
                  row["site_id"], row["created_at"],
                  None if origins is None else tuple(json.loads(origins)), row["enabled"],
                  deleted_at, row["retention"])


def _values(s: Source) -> dict[str, Any]:
    return {"id": s.id, "name": s.name, "kind": s.kind, "write_key": s.write_key,
            "site_id": s.site_id, "replayable": s.replayable, "created_at": s.created_at,
            "allowed_origins": None if s.allowed_origins is None
            else json.dumps(list(s.allowed_origins)), "enabled": s.enabled,
            "retention": s.retention}


def _conflict(exc: psycopg.errors.UniqueViolation, source: Source) -> Exception:
    constraint = constraint_of(exc)
    if constraint == "sources_name_key":
        return Conflict(f"a source named {source.name!r} already exists", field="name")
    if constraint == "sources_write_key_key":
        return Conflict("that write key is taken", field="write_key")
    return Conflict(f"a source with id {source.id!r} already exists", field="id")


class PgSourceStore:
    """:class:`~millpond.storage.contracts.SourceStore`; each method one statement."""

    def __init__(self, db: PgState):
        self._db = db
        db.create_tables(SCHEMA)

    def create(self, source: Source) -> Source:
        if self._db.execute("SELECT 1 FROM deleted_sources WHERE id = %s",
                            (source.id,)).fetchone():
            raise Conflict(f"a source with id {source.id!r} already exists", field="id")
        try:
            self._db.execute(
                "INSERT INTO sources (id, name, kind, write_key, site_id, replayable,"
                " created_at, allowed_origins, enabled, retention) VALUES (%(id)s, %(name)s,"
                " %(kind)s, %(write_key)s, %(site_id)s, %(replayable)s, %(created_at)s,"
                " %(allowed_origins)s, %(enabled)s, %(retention)s)", _values(source))
        except psycopg.errors.UniqueViolation as exc:
            raise _conflict(exc, source) from None
        return source

    def get(self, ref: str) -> Source:
        row = self._db.execute("SELECT * FROM sources WHERE id = %s OR name = %s"
                               " ORDER BY (id = %s) DESC LIMIT 1", (ref, ref, ref)).fetchone()
        if row is None:
            raise NotFound(f"no source {ref!r}", field="source")
        return _row(row)

    def by_write_key(self, write_key: str) -> Source | None:
        row = self._db.execute("SELECT * FROM sources WHERE write_key = %s",
                               (write_key,)).fetchone()
        return None if row is None else _row(row)

    def by_site_id(self, site_id: str) -> Source | None:
        row = self._db.execute("SELECT * FROM sources WHERE site_id = %s AND kind = 'track'",
                               (site_id,)).fetchone()
        return None if row is None else _row(row)

    def list(self) -> list[Source]:
        return [_row(r) for r in self._db.execute(
            "SELECT * FROM sources ORDER BY created_at, ord")]

    def update(self, source: Source) -> Source:
        try:
            cur = self._db.execute(
                "UPDATE sources SET name = %(name)s, kind = %(kind)s,"
                " write_key = %(write_key)s, site_id = %(site_id)s,"
                " replayable = %(replayable)s, created_at = %(created_at)s,"
                " allowed_origins = %(allowed_origins)s, enabled = %(enabled)s,"
                " retention = %(retention)s WHERE id = %(id)s", _values(source))
        except psycopg.errors.UniqueViolation as exc:
            raise _conflict(exc, source) from None
        if cur.rowcount == 0:
            raise NotFound(f"no source {source.id!r}", field="source")
        return source

    def delete(self, source_id: str) -> Source:
        source = self.get(source_id)
        if source.id != source_id:
            raise NotFound(f"no source {source_id!r}", field="source")
        tombstone = msgspec.structs.replace(source, deleted_at=time.time())
        with self._db.transaction() as conn:
            cur = conn.execute("DELETE FROM sources WHERE id = %s", (source_id,))
            if cur.rowcount == 0:
                raise NotFound(f"no source {source_id!r}", field="source")
            conn.execute(
                "INSERT INTO deleted_sources (id, name, kind, write_key, site_id, replayable,"
                " created_at, allowed_origins, enabled, deleted_at, retention) VALUES (%(id)s,"
                " %(name)s, %(kind)s, %(write_key)s, %(site_id)s, %(replayable)s,"
                " %(created_at)s, %(allowed_origins)s, %(enabled)s, %(deleted_at)s,"
                " %(retention)s)",
                {**_values(tombstone), "deleted_at": tombstone.deleted_at})
        return tombstone

    def deleted(self) -> list[Source]:
        return [_row(r, r["deleted_at"]) for r in self._db.execute(
            "SELECT * FROM deleted_sources ORDER BY deleted_at, ord")]
