"""Configured destinations on PostgreSQL, settings as given (the pump needs the secrets;
only presentation masks them). JSON as text, not ``jsonb``: it keeps the keys' order."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from millpond.errors import Conflict, NotFound
from millpond.storage.models import Destination
from millpond.storage.postgres.connection import PgState, constraint_of

SCHEMA = """
CREATE TABLE IF NOT EXISTS destinations (
    ord BIGSERIAL,
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    settings TEXT NOT NULL,
    rate_limit TEXT NOT NULL,
    actions TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    connected_at DOUBLE PRECISION NOT NULL,
    connected_seq BIGINT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
"""


def _row(row: dict[str, Any]) -> Destination:
    return Destination(row["id"], row["name"], row["type"], json.loads(row["settings"]),
                       json.loads(row["rate_limit"]), json.loads(row["actions"]),
                       row["enabled"], row["connected_at"], row["connected_seq"],
                       row["updated_at"])


def _values(d: Destination) -> dict[str, Any]:
    return {"id": d.id, "name": d.name, "type": d.type, "settings": json.dumps(d.settings),
            "rate_limit": json.dumps(d.rate_limit), "actions": json.dumps(d.actions),
            "enabled": d.enabled, "connected_at": d.connected_at,
            "connected_seq": d.connected_seq, "updated_at": d.updated_at}


def _conflict(exc: psycopg.errors.UniqueViolation, dest: Destination) -> Exception:
    if constraint_of(exc) == "destinations_name_key":
        return Conflict(f"a destination named {dest.name!r} already exists", field="name")
    return Conflict(f"a destination with id {dest.id!r} already exists", field="id")


class PgDestinationStore:
    """:class:`~millpond.storage.contracts.DestinationStore`; each method one statement."""

    def __init__(self, db: PgState):
        self._db = db
        db.create_tables(SCHEMA)

    def create(self, destination: Destination) -> Destination:
        try:
            self._db.execute(
                "INSERT INTO destinations (id, name, type, settings, rate_limit, actions,"
                " enabled, connected_at, connected_seq, updated_at) VALUES (%(id)s,"
                " %(name)s, %(type)s, %(settings)s, %(rate_limit)s, %(actions)s,"
                " %(enabled)s, %(connected_at)s, %(connected_seq)s, %(updated_at)s)",
                _values(destination))
        except psycopg.errors.UniqueViolation as exc:
            raise _conflict(exc, destination) from None
        return destination

    def get(self, ref: str) -> Destination:
        row = self._db.execute("SELECT * FROM destinations WHERE id = %s OR name = %s"
                               " ORDER BY (id = %s) DESC LIMIT 1", (ref, ref, ref)).fetchone()
        if row is None:
            raise NotFound(f"no destination {ref!r}", field="destination")
        return _row(row)

    def list(self) -> list[Destination]:
        return [_row(r) for r in self._db.execute(
            "SELECT * FROM destinations ORDER BY connected_at, ord")]

    def update(self, destination: Destination) -> Destination:
        try:
            cur = self._db.execute(
                "UPDATE destinations SET name = %(name)s, type = %(type)s,"
                " settings = %(settings)s, rate_limit = %(rate_limit)s,"
                " actions = %(actions)s, enabled = %(enabled)s,"
                " connected_at = %(connected_at)s, connected_seq = %(connected_seq)s,"
                " updated_at = %(updated_at)s WHERE id = %(id)s", _values(destination))
        except psycopg.errors.UniqueViolation as exc:
            raise _conflict(exc, destination) from None
        if cur.rowcount == 0:
            raise NotFound(f"no destination {destination.id!r}", field="destination")
        return destination

    def delete(self, destination_id: str) -> Destination:
        dest = self.get(destination_id)
        if dest.id != destination_id:
            raise NotFound(f"no destination {destination_id!r}", field="destination")
        self._db.execute("DELETE FROM destinations WHERE id = %s", (destination_id,))
        return dest
