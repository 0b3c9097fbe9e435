"""Messages the collector refused, in ``state.db`` (diagnostics, apart from the log)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from millpond.storage.models import Rejection
from millpond.storage.sqlite.connection import StateDB, immediate

SCHEMA = """
CREATE TABLE IF NOT EXISTS rejections (
    id INTEGER PRIMARY KEY,
    source_id TEXT NOT NULL,
    received INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    code TEXT NOT NULL,
    reason TEXT NOT NULL,
    field TEXT,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS rejections_by_source ON rejections(source_id, id);
"""


class SQLiteRejectionStore:
    """:class:`~millpond.storage.contracts.RejectionStore`."""

    def __init__(self, db: StateDB):
        self._db = db
        db.executescript(SCHEMA)

    def add(self, rejections: Sequence[Rejection]) -> None:
        if not rejections:
            return
        conn = self._db.conn()
        with immediate(conn):
            for r in rejections:
                r.id = cast(int, conn.execute(  # an INSERT's rowid: never None
                    "INSERT INTO rejections (source_id, received, idx, code, reason, field,"
                    " body) VALUES (?,?,?,?,?,?,?)",
                    (r.source_id, r.received_ms, r.index, r.code, r.reason, r.field,
                     r.body)).lastrowid)

    def list(self, source_id: str | None, after_id: int, limit: int) -> list[Rejection]:
        sql = ("SELECT id, source_id, received, idx, code, reason, field, body FROM rejections"
               " WHERE id > ?")
        args: list[str | int] = [after_id or 0]
        if source_id:
            sql += " AND source_id = ?"
            args.append(source_id)
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)
        return [Rejection(source_id=row["source_id"], index=row["idx"], code=row["code"],
                          reason=row["reason"], field=row["field"], received_ms=row["received"],
                          body=bytes(row["body"]), id=row["id"])
                for row in self._db.conn().execute(sql, args)]
