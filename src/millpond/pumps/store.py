"""Configured destinations in ``state.db``: what the owner saved, validated, never masked.

The store keeps settings exactly as given (secrets included) because the pump needs
them; every read path meant for people goes through :meth:`Destination.to_dict`, which
masks them with the type's own rule. Validation lives in :mod:`millpond.pumps.config`;
the store only refuses what it can see itself (duplicate names, unknown ids).
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, replace

from millpond.errors import Conflict, NotFound
from millpond.pumps.config import masked_settings
from millpond.state import StateDB
from millpond.timeutil import format_ms

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


@dataclass(frozen=True, slots=True)
class Destination:
    """One configured destination. ``settings`` are the raw (unmasked) values."""

    id: str
    name: str
    type: str
    settings: dict
    rate_limit: dict
    actions: list[dict]
    enabled: bool
    connected_at: float
    connected_seq: int
    updated_at: float = 0.0

    def to_dict(self) -> dict:
        """The public shape (DESIGN.md), with secrets masked by the type's rule."""
        return {
            "id": self.id, "name": self.name, "type": self.type,
            "settings": masked_settings(self.type, self.settings),
            "rate_limit": dict(self.rate_limit),
            "actions": [dict(a) for a in self.actions],
            "enabled": self.enabled,
            "connected_at": format_ms(int(self.connected_at * 1000)),
            "connected_seq": self.connected_seq,
        }


class DestinationStore:
    """CRUD for destinations; every method is one small transaction on ``state.db``."""

    def __init__(self, db: StateDB):
        self._db = db
        db.executescript(SCHEMA)

    @staticmethod
    def _row(row) -> Destination:
        return Destination(row["id"], row["name"], row["type"], json.loads(row["settings"]),
                           json.loads(row["rate_limit"]), json.loads(row["actions"]),
                           bool(row["enabled"]), row["connected_at"], row["connected_seq"],
                           row["updated_at"])

    def create(self, *, name: str, type: str, settings: dict, rate_limit: dict,
               actions: list[dict], enabled: bool, connected_seq: int) -> Destination:
        """Insert a validated destination; ``connected_seq`` is where its live pump starts."""
        now = time.time()
        dest = Destination("dst_" + secrets.token_hex(6), name, type, settings, rate_limit,
                           actions, enabled, now, connected_seq, now)
        try:
            self._db.conn().execute(
                "INSERT INTO destinations VALUES (?,?,?,?,?,?,?,?,?,?)",
                (dest.id, dest.name, dest.type, json.dumps(settings), json.dumps(rate_limit),
                 json.dumps(actions), int(enabled), now, connected_seq, now))
        except Exception as exc:
            if "UNIQUE" in str(exc):
                raise Conflict(f"a destination named {name!r} already exists",
                               field="name") from None
            raise
        return dest

    def list(self) -> list[Destination]:
        rows = self._db.conn().execute("SELECT * FROM destinations ORDER BY connected_at")
        return [self._row(r) for r in rows]

    def get(self, ref: str) -> Destination:
        """A destination by id or by name; NotFound otherwise."""
        row = self._db.conn().execute(
            "SELECT * FROM destinations WHERE id = ? OR name = ?", (ref, ref)).fetchone()
        if row is None:
            raise NotFound(f"no destination {ref!r}", field="destination")
        return self._row(row)

    def save(self, dest: Destination) -> Destination:
        """Write back every editable field of ``dest`` (validated by the caller)."""
        dest = replace(dest, updated_at=time.time())
        try:
            cur = self._db.conn().execute(
                "UPDATE destinations SET name=?, settings=?, rate_limit=?, actions=?, enabled=?,"
                " updated_at=? WHERE id=?",
                (dest.name, json.dumps(dest.settings), json.dumps(dest.rate_limit),
                 json.dumps(dest.actions), int(dest.enabled), dest.updated_at, dest.id))
        except Exception as exc:
            if "UNIQUE" in str(exc):
                raise Conflict(f"a destination named {dest.name!r} already exists",
                               field="name") from None
            raise
        if cur.rowcount == 0:
            raise NotFound(f"no destination {dest.id!r}", field="destination")
        return dest

    def delete(self, ref: str) -> Destination:
        dest = self.get(ref)
        self._db.conn().execute("DELETE FROM destinations WHERE id = ?", (dest.id,))
        return dest
