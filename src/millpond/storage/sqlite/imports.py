"""Server-side import jobs in ``state.db``."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from millpond.errors import BadRequest, NotFound
from millpond.storage.models import ImportJob
from millpond.storage.sqlite.connection import StateDB

SCHEMA = """
CREATE TABLE IF NOT EXISTS imports (
    id TEXT PRIMARY KEY,
    source_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    file TEXT NOT NULL,
    state TEXT NOT NULL,
    options TEXT NOT NULL,
    summary TEXT,
    error TEXT,
    created_at REAL NOT NULL
);
"""
#: Columns added after the first release, for data dirs created before them.
_ADDED_COLUMNS = {"progress": "TEXT", "updated_at": "REAL NOT NULL DEFAULT 0"}


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _job(row: sqlite3.Row) -> ImportJob:
    def load(text: str | None) -> Any:
        return None if text is None else json.loads(text)

    return ImportJob(row["id"], row["source_id"], row["kind"], row["file"], row["state"],
                     json.loads(row["options"]), load(row["summary"]), row["error"],
                     load(row["progress"]), row["created_at"], row["updated_at"])


class SQLiteImportJobStore:
    """:class:`~millpond.storage.contracts.ImportJobStore`; each method one statement."""

    def __init__(self, db: StateDB):
        self._db = db
        db.executescript(SCHEMA)
        have = db.columns("imports")
        for column, decl in _ADDED_COLUMNS.items():
            if column not in have:
                db.conn().execute(f"ALTER TABLE imports ADD COLUMN {column} {decl}")

    def create(self, job: ImportJob) -> ImportJob:
        try:
            self._db.conn().execute(
                "INSERT INTO imports (id, source_id, kind, file, state, options, summary,"
                " error, progress, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (job.id, job.source_id, job.kind, job.file, job.state, json.dumps(job.options),
                 _json(job.summary), job.error, _json(job.progress), job.created_at,
                 job.updated_at))
        except sqlite3.IntegrityError:
            raise BadRequest(f"an import with id {job.id!r} already exists", field="id") \
                from None
        return job

    def get(self, job_id: str) -> ImportJob:
        row = self._db.conn().execute("SELECT * FROM imports WHERE id = ?",
                                      (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"no import {job_id!r}", field="id")
        return _job(row)

    def list(self, limit: int = 100) -> list[ImportJob]:
        rows = self._db.conn().execute(
            "SELECT * FROM imports ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,))
        return [_job(r) for r in rows]

    def update(self, job: ImportJob) -> ImportJob:
        cur = self._db.conn().execute(
            "UPDATE imports SET source_id = ?, kind = ?, file = ?, state = ?, options = ?,"
            " summary = ?, error = ?, progress = ?, created_at = ?, updated_at = ?"
            " WHERE id = ?",
            (job.source_id, job.kind, job.file, job.state, json.dumps(job.options),
             _json(job.summary), job.error, _json(job.progress), job.created_at,
             job.updated_at, job.id))
        if cur.rowcount == 0:
            raise NotFound(f"no import {job.id!r}", field="id")
        return job
