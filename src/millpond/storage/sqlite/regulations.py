"""Regulations in ``state.db``: one row per request, its record as JSON (it is read and
rewritten whole by the regulation job, a few times per request)."""

from __future__ import annotations

import msgspec

from millpond.errors import NotFound
from millpond.storage.models import Regulation
from millpond.storage.sqlite.connection import StateDB

SCHEMA = """
CREATE TABLE IF NOT EXISTS regulations (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    record BLOB NOT NULL
);
"""

_decode = msgspec.json.Decoder(Regulation).decode


class SQLiteRegulationStore:
    """:class:`~millpond.storage.contracts.RegulationStore`."""

    def __init__(self, db: StateDB):
        self._db = db
        db.executescript(SCHEMA)

    def create(self, regulation: Regulation) -> Regulation:
        self._db.conn().execute(
            "INSERT INTO regulations (id, created_at, record) VALUES (?,?,?)",
            (regulation.id, regulation.created_at, msgspec.json.encode(regulation)))
        return regulation

    def get(self, regulation_id: str) -> Regulation:
        row = self._db.conn().execute("SELECT record FROM regulations WHERE id = ?",
                                      (regulation_id,)).fetchone()
        if row is None:
            raise NotFound(f"no regulation {regulation_id!r}", field="id")
        return _decode(row["record"])

    def list(self, limit: int = 100) -> list[Regulation]:
        rows = self._db.conn().execute(
            "SELECT record FROM regulations ORDER BY created_at DESC, rowid DESC LIMIT ?",
            (limit,))
        return [_decode(r["record"]) for r in rows]

    def update(self, regulation: Regulation) -> Regulation:
        cur = self._db.conn().execute("UPDATE regulations SET record = ? WHERE id = ?",
                                      (msgspec.json.encode(regulation), regulation.id))
        if cur.rowcount == 0:
            raise NotFound(f"no regulation {regulation.id!r}", field="id")
        return regulation
