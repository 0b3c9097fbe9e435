"""Server-side import jobs on PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from millpond.errors import BadRequest, NotFound
from millpond.storage.models import ImportJob
from millpond.storage.postgres.connection import PgState

SCHEMA = """
CREATE TABLE IF NOT EXISTS imports (
    ord BIGSERIAL,
    id TEXT PRIMARY KEY,
    source_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    file TEXT NOT NULL,
    state TEXT NOT NULL,
    options TEXT NOT NULL,
    summary TEXT,
    error TEXT,
    progress TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL DEFAULT 0
);
"""


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _job(row: dict[str, Any]) -> ImportJob:
    return ImportJob(row["id"], row["source_id"], row["kind"], row["file"], row["state"],
                     json.loads(row["options"]), _load(row["summary"]), row["error"],
                     _load(row["progress"]), row["created_at"], row["updated_at"])


def _values(job: ImportJob) -> dict[str, Any]:
    return {"id": job.id, "source_id": job.source_id, "kind": job.kind, "file": job.file,
            "state": job.state, "options": json.dumps(job.options),
            "summary": _json(job.summary), "error": job.error,
            "progress": _json(job.progress), "created_at": job.created_at,
            "updated_at": job.updated_at}


class PgImportJobStore:
    """:class:`~millpond.storage.contracts.ImportJobStore`; each method one statement."""

    def __init__(self, db: PgState):
        self._db = db
        db.create_tables(SCHEMA)

    def create(self, job: ImportJob) -> ImportJob:
        try:
            self._db.execute(
                "INSERT INTO imports (id, source_id, kind, file, state, options, summary,"
                " error, progress, created_at, updated_at) VALUES (%(id)s, %(source_id)s,"
                " %(kind)s, %(file)s, %(state)s, %(options)s, %(summary)s, %(error)s,"
                " %(progress)s, %(created_at)s, %(updated_at)s)", _values(job))
        except psycopg.errors.UniqueViolation:
            raise BadRequest(f"an import with id {job.id!r} already exists", field="id") \
                from None
        return job

    def get(self, job_id: str) -> ImportJob:
        row = self._db.execute("SELECT * FROM imports WHERE id = %s", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"no import {job_id!r}", field="id")
        return _job(row)

    def list(self, limit: int = 100) -> list[ImportJob]:
        return [_job(r) for r in self._db.execute(
            "SELECT * FROM imports ORDER BY created_at DESC, ord DESC LIMIT %s", (limit,))]

    def update(self, job: ImportJob) -> ImportJob:
        cur = self._db.execute(
            "UPDATE imports SET source_id = %(source_id)s, kind = %(kind)s, file = %(file)s,"
            " state = %(state)s, options = %(options)s, summary = %(summary)s,"
            " error = %(error)s, progress = %(progress)s, created_at = %(created_at)s,"
            " updated_at = %(updated_at)s WHERE id = %(id)s", _values(job))
        if cur.rowcount == 0:
            raise NotFound(f"no import {job.id!r}", field="id")
        return job
