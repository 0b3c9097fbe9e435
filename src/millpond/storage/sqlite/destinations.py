"""Configured destinations in ``state.db``, settings as given (secrets included: the pump
needs them; only presentation masks them)."""

from __future__ import annotations

import json
import sqlite3

from millpond.errors import Conflict, NotFound
from millpond.storage.models import Destination
from millpond.storage.sqlite.connection import StateDB, unique_violation

SCHEMA = """
CREATE TABLE IF NOT EXISTS destinations (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    settings TEXT NOT NULL,
    rate_limit TEXT NOT NULL,
    actions TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    connected_at REAL NOT NULL,
    connected_seq INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
"""


def _row(row: sqlite3.Row) -> Destination:
    return Destination(row["id"], row["name"], row["type"], json.loads(row["settings"]),
                       json.loads(row["rate_limit"]), json.loads(row["actions"]),
                       bool(row["enabled"]), row["connected_at"], row["connected_seq"],
                       row["updated_at"])


def _conflict(exc: Exception, dest: Destination) -> Exception:
    if unique_violation(exc, "name"):
        return Conflict(f"a destination named {dest.name!r} already exists", field="name")
    if unique_violation(exc, "id"):
        return Conflict(f"a destination with id {dest.id!r} already exists", field="id")
    return exc


class SQLiteDestinationStore:
    """:class:`~millpond.storage.contracts.DestinationStore`; each method one statement."""

    def __init__(self, db: StateDB):
        self._db = db
        db.executescript(SCHEMA)

    def create(self, destination: Destination) -> Destination:
        d = destination
        try:
            self._db.conn().execute(
                "INSERT INTO destinations VALUES (?,?,?,?,?,?,?,?,?,?)",
                (d.id, d.name, d.type, json.dumps(d.settings), json.dumps(d.rate_limit),
                 json.dumps(d.actions), int(d.enabled), d.connected_at, d.connected_seq,
                 d.updated_at))
        except sqlite3.IntegrityError as exc:
            raise _conflict(exc, d) from None
        return d

    def get(self, ref: str) -> Destination:
        row = self._db.conn().execute(
            "SELECT * FROM destinations WHERE id = ? OR name = ? ORDER BY id = ? DESC LIMIT 1",
            (ref, ref, ref)).fetchone()
        if row is None:
            raise NotFound(f"no destination {ref!r}", field="destination")
        return _row(row)

    def list(self) -> list[Destination]:
        rows = self._db.conn().execute(
            "SELECT * FROM destinations ORDER BY connected_at, rowid")
        return [_row(r) for r in rows]

    def update(self, destination: Destination) -> Destination:
        d = destination
        try:
            cur = self._db.conn().execute(
                "UPDATE destinations SET name = ?, type = ?, settings = ?, rate_limit = ?,"
                " actions = ?, enabled = ?, connected_at = ?, connected_seq = ?,"
                " updated_at = ? WHERE id = ?",
                (d.name, d.type, json.dumps(d.settings), json.dumps(d.rate_limit),
                 json.dumps(d.actions), int(d.enabled), d.connected_at, d.connected_seq,
                 d.updated_at, d.id))
        except sqlite3.IntegrityError as exc:
            raise _conflict(exc, d) from None
        if cur.rowcount == 0:
            raise NotFound(f"no destination {d.id!r}", field="destination")
        return d

    def delete(self, destination_id: str) -> Destination:
        dest = self.get(destination_id)
        if dest.id != destination_id:
            raise NotFound(f"no destination {destination_id!r}", field="destination")
        self._db.conn().execute("DELETE FROM destinations WHERE id = ?", (destination_id,))
        return dest
