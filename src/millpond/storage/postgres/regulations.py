"""Regulations on PostgreSQL: one row per request, its record as JSON (read and rewritten
whole by the regulation job, a few times per request), as on the embedded store."""

from __future__ import annotations

import msgspec

from millpond.errors import NotFound
from millpond.storage.models import Regulation
from millpond.storage.postgres.connection import PgState

SCHEMA = """
CREATE TABLE IF NOT EXISTS regulations (
    ord BIGSERIAL,
    id TEXT PRIMARY KEY,
    created_at DOUBLE PRECISION NOT NULL,
    record BYTEA NOT NULL
);
"""

_decode = msgspec.json.Decoder(Regulation).decode


class PgRegulationStore:
    """:class:`~millpond.storage.contracts.RegulationStore` on PostgreSQL."""

    def __init__(self, db: PgState):
        self._db = db
        db.create_tables(SCHEMA)

    def create(self, regulation: Regulation) -> Regulation:
        self._db.execute("INSERT INTO regulations (id, created_at, record) VALUES (%s, %s, %s)",
                         (regulation.id, regulation.created_at,
                          msgspec.json.encode(regulation)))
        return regulation

    def get(self, regulation_id: str) -> Regulation:
        row = self._db.execute("SELECT record FROM regulations WHERE id = %s",
                               (regulation_id,)).fetchone()
        if row is None:
            raise NotFound(f"no regulation {regulation_id!r}", field="id")
        return _decode(row["record"])

    def list(self, limit: int = 100) -> list[Regulation]:
        rows = self._db.execute("SELECT record FROM regulations"
                                " ORDER BY created_at DESC, ord DESC LIMIT %s", (limit,))
        return [_decode(r["record"]) for r in rows]

    def update(self, regulation: Regulation) -> Regulation:
        cur = self._db.execute("UPDATE regulations SET record = %s WHERE id = %s",
                               (msgspec.json.encode(regulation), regulation.id))
        if cur.rowcount == 0:
            raise NotFound(f"no regulation {regulation.id!r}", field="id")
        return regulation
