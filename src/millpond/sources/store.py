"""Source records and write-key lookup.

Write keys are looked up on every collector request, so the store keeps an in-memory
index that every change in this process refreshes (one process owns a data dir).
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import asdict, dataclass

from millpond.errors import BadRequest, Conflict, NotFound
from millpond.state import StateDB

KINDS = ("pipelines", "track", "import")
DEFAULT_REPLAYABLE = {"pipelines": True, "import": True, "track": False}

SCHEMA = """
CREATE TABLE IF NOT EXISTS sources (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    write_key TEXT NOT NULL UNIQUE,
    site_id TEXT,
    replayable INTEGER NOT NULL,
    created_at REAL NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Source:
    id: str
    name: str
    kind: str
    write_key: str
    replayable: bool
    site_id: str | None = None
    created_at: float = 0.0

    def to_dict(self) -> dict:
        data = asdict(self)
        if self.kind != "track":
            data.pop("site_id")
        return data


class SourceStore:
    """CRUD for sources plus the hot write-key index used by the collector."""

    def __init__(self, db: StateDB):
        self._db = db
        db.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._by_key: dict[str, Source] = {}
        self._by_site: dict[str, Source] = {}
        self._reload()

    def _reload(self) -> None:
        sources = [self._row(r) for r in self._db.conn().execute("SELECT * FROM sources")]
        with self._lock:
            self._by_key = {s.write_key: s for s in sources}
            self._by_site = {s.site_id: s for s in sources if s.site_id}

    @staticmethod
    def _row(row) -> Source:
        return Source(row["id"], row["name"], row["kind"], row["write_key"],
                      bool(row["replayable"]), row["site_id"], row["created_at"])

    def by_write_key(self, key: str) -> Source | None:
        return self._by_key.get(key)

    def by_site_id(self, site_id: str) -> Source | None:
        return self._by_site.get(site_id)

    def create(self, name: str, kind: str = "pipelines", replayable: bool | None = None) -> Source:
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            raise BadRequest("name must be a non-empty string of at most 100 characters",
                             field="name")
        if kind not in KINDS:
            raise BadRequest(f"kind must be one of {', '.join(KINDS)}; got {kind!r}",
                             field="kind")
        if replayable is None:
            replayable = DEFAULT_REPLAYABLE[kind]
        source = Source(id="src_" + secrets.token_hex(6), name=name.strip(), kind=kind,
                        write_key=secrets.token_urlsafe(24), replayable=bool(replayable),
                        site_id=secrets.token_hex(10) if kind == "track" else None,
                        created_at=time.time())
        try:
            self._db.conn().execute(
                "INSERT INTO sources VALUES (?,?,?,?,?,?,?)",
                (source.id, source.name, source.kind, source.write_key, source.site_id,
                 int(source.replayable), source.created_at))
        except Exception as exc:
            if "UNIQUE" in str(exc):
                raise Conflict(f"a source named {source.name!r} already exists",
                               field="name") from None
            raise
        self._reload()
        return source

    def list(self) -> list[Source]:
        rows = self._db.conn().execute("SELECT * FROM sources ORDER BY created_at")
        return [self._row(r) for r in rows]

    def get(self, ref: str) -> Source:
        """A source by id or by name."""
        row = self._db.conn().execute(
            "SELECT * FROM sources WHERE id = ? OR name = ?", (ref, ref)).fetchone()
        if row is None:
            raise NotFound(f"no source {ref!r}", field="source")
        return self._row(row)

    def update(self, ref: str, *, name: str | None = None,
               replayable: bool | None = None) -> Source:
        source = self.get(ref)
        if name is not None:
            if not isinstance(name, str) or not name.strip():
                raise BadRequest("name must be a non-empty string", field="name")
            self._db.conn().execute("UPDATE sources SET name = ? WHERE id = ?",
                                    (name.strip(), source.id))
        if replayable is not None:
            self._db.conn().execute("UPDATE sources SET replayable = ? WHERE id = ?",
                                    (int(bool(replayable)), source.id))
        self._reload()
        return self.get(source.id)

    def rotate_key(self, ref: str) -> Source:
        source = self.get(ref)
        self._db.conn().execute("UPDATE sources SET write_key = ? WHERE id = ?",
                                (secrets.token_urlsafe(24), source.id))
        self._reload()
        return self.get(source.id)

    def delete(self, ref: str) -> Source:
        """Stop accepting data for a source; its stored events stay in the log."""
        source = self.get(ref)
        self._db.conn().execute("DELETE FROM sources WHERE id = ?", (source.id,))
        self._reload()
        return source
