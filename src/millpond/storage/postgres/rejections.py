"""Messages the collector refused, on PostgreSQL (diagnostics, apart from the log)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from millpond.storage.models import Rejection
from millpond.storage.postgres.connection import PgState

SCHEMA = """
CREATE TABLE IF NOT EXISTS rejections (
    id BIGSERIAL PRIMARY KEY,
    source_id TEXT NOT NULL,
    received BIGINT NOT NULL,
    idx INTEGER NOT NULL,
    code TEXT NOT NULL,
    reason TEXT NOT NULL,
    field TEXT,
    body BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS rejections_by_source ON rejections(source_id, id);
"""


class PgRejectionStore:
    """:class:`~millpond.storage.contracts.RejectionStore`."""

    def __init__(self, db: PgState):
        self._db = db
        db.create_tables(SCHEMA)

    def add(self, rejections: Sequence[Rejection]) -> None:
        if not rejections:
            return
        with self._db.transaction() as conn:
            for r in rejections:  # ids in order: one INSERT ... RETURNING each
                row = conn.execute(
                    "INSERT INTO rejections (source_id, received, idx, code, reason, field,"
                    " body) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
                    (r.source_id, r.received_ms, r.index, r.code, r.reason, r.field,
                     r.body)).fetchone()
                assert row is not None
                r.id = row["id"]

    def list(self, source_id: str | None, after_id: int, limit: int) -> list[Rejection]:
        args: list[Any] = [after_id or 0]
        if source_id:
            query = ("SELECT * FROM rejections WHERE id > %s AND source_id = %s"
                     " ORDER BY id LIMIT %s")
            args.append(source_id)
        else:
            query = "SELECT * FROM rejections WHERE id > %s ORDER BY id LIMIT %s"
        args.append(limit)
        return [Rejection(source_id=row["source_id"], index=row["idx"], code=row["code"],
                          reason=row["reason"], field=row["field"], received_ms=row["received"],
                          body=bytes(row["body"]), id=row["id"])
                for row in self._db.execute(query, args)]
