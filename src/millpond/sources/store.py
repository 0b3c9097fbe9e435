"""Source records and write-key lookup.

Write keys are looked up on every collector request, so the store keeps an in-memory
index that every change in this process refreshes (one process owns a data dir).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import asdict, dataclass

from millpond.errors import BadRequest, Conflict, NotFound
from millpond.sources.origins import BadOrigin, normalize_origins
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
    created_at REAL NOT NULL,
    allowed_origins TEXT,
    enabled INTEGER NOT NULL DEFAULT 1
);
"""
#: Columns added after the first release, for data dirs created before them.
_ADDED_COLUMNS = {"allowed_origins": "TEXT", "enabled": "INTEGER NOT NULL DEFAULT 1"}
_UNSET = object()


@dataclass(frozen=True, slots=True)
class Source:
    id: str
    name: str
    kind: str
    write_key: str
    replayable: bool
    site_id: str | None = None
    created_at: float = 0.0
    #: Origins a browser may send this source's events from; None: any origin.
    allowed_origins: tuple[str, ...] | None = None
    #: A disabled source's write key is refused (403) and its SDK settings answer 404.
    enabled: bool = True

    def to_dict(self) -> dict:
        data = asdict(self)
        if self.kind != "track":
            data.pop("site_id")
        if self.allowed_origins is not None:
            data["allowed_origins"] = list(self.allowed_origins)
        return data


def _origins(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list | tuple):
        raise BadRequest('allowed_origins must be a list of origins, e.g. '
                         '["https://www.example.com"], or null for any origin',
                         field="allowed_origins")
    try:
        return normalize_origins(value)
    except BadOrigin as exc:
        raise BadRequest(str(exc), field="allowed_origins") from None


class SourceStore:
    """CRUD for sources plus the hot write-key index used by the collector."""

    def __init__(self, db: StateDB):
        self._db = db
        db.executescript(SCHEMA)
        have = {r[1] for r in db.conn().execute("PRAGMA table_info(sources)")}
        for column, decl in _ADDED_COLUMNS.items():
            if column not in have:
                db.conn().execute(f"ALTER TABLE sources ADD COLUMN {column} {decl}")
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
        origins = row["allowed_origins"]
        return Source(row["id"], row["name"], row["kind"], row["write_key"],
                      bool(row["replayable"]), row["site_id"], row["created_at"],
                      None if origins is None else tuple(json.loads(origins)),
                      bool(row["enabled"]))

    def by_write_key(self, key: str) -> Source | None:
        return self._by_key.get(key)

    def by_site_id(self, site_id: str) -> Source | None:
        return self._by_site.get(site_id)

    def create(self, name: str, kind: str = "pipelines", replayable: bool | None = None,
               allowed_origins: list[str] | None = None, enabled: bool = True) -> Source:
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
                        created_at=time.time(), allowed_origins=_origins(allowed_origins),
                        enabled=bool(enabled))
        try:
            self._db.conn().execute(
                "INSERT INTO sources (id, name, kind, write_key, site_id, replayable,"
                " created_at, allowed_origins, enabled) VALUES (?,?,?,?,?,?,?,?,?)",
                (source.id, source.name, source.kind, source.write_key, source.site_id,
                 int(source.replayable), source.created_at,
                 _dump_origins(source.allowed_origins), int(source.enabled)))
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

    def update(self, ref: str, *, name: str | None = None, replayable: bool | None = None,
               allowed_origins: object = _UNSET, enabled: bool | None = None) -> Source:
        """Change the given fields; ``allowed_origins=None`` means any origin again."""
        source = self.get(ref)
        changes: dict[str, object] = {}
        if name is not None:
            if not isinstance(name, str) or not name.strip():
                raise BadRequest("name must be a non-empty string", field="name")
            changes["name"] = name.strip()
        if replayable is not None:
            changes["replayable"] = int(bool(replayable))
        if allowed_origins is not _UNSET:
            changes["allowed_origins"] = _dump_origins(_origins(allowed_origins))
        if enabled is not None:
            changes["enabled"] = int(bool(enabled))
        if changes:
            sets = ", ".join(f"{column} = ?" for column in changes)
            try:
                self._db.conn().execute(f"UPDATE sources SET {sets} WHERE id = ?",
                                        (*changes.values(), source.id))
            except Exception as exc:
                if "UNIQUE" in str(exc):
                    raise Conflict(f"a source named {changes['name']!r} already exists",
                                   field="name") from None
                raise
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


def _dump_origins(origins: tuple[str, ...] | None) -> str | None:
    return None if origins is None else json.dumps(list(origins))
