"""Sources as the API and the collector use them: validation, new keys, the public shape,
and the write-key lookup on the collector's hot path.

The store (:class:`~millpond.storage.contracts.SourceStore`) keeps records and refuses only
what it can see (unknown ids, taken names); what a valid name, kind or origin is, and
what a new source gets (ids, keys, defaults), is decided here, the same for every backend.

Why a cache for write keys, and why it expires after a second: every collector request
looks its key up, and a store read per request would cost more than the request. But
another process may change sources in the same store (a second server, the CLI on the
data dir): a change made elsewhere reaches this process's cache within
:data:`CACHE_SECONDS`; one made here is seen at once.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import msgspec

from millpond.errors import BadRequest, NotFound
from millpond.retention.policy import BadRetention, normalize
from millpond.sources.origins import BadOrigin, normalize_origins
from millpond.storage.contracts import SourceStore
from millpond.storage.models import Source

log = logging.getLogger("millpond.sources")

KINDS = ("pipelines", "track", "import")
DEFAULT_REPLAYABLE = {"pipelines": True, "import": True, "track": False}
#: How stale the write-key cache may be for changes made by another process.
CACHE_SECONDS = 1.0
_UNSET: Any = object()


def source_dict(source: Source) -> dict:
    """The public shape of a source (``site_id`` only for track sources)."""
    data = msgspec.structs.asdict(source)
    if source.kind != "track":
        data.pop("site_id")
    if source.deleted_at is None:
        data.pop("deleted_at")
    if source.allowed_origins is not None:
        data["allowed_origins"] = list(source.allowed_origins)
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


def _retention(value: object) -> str:
    try:
        return normalize(value)
    except BadRetention as exc:
        raise BadRequest(str(exc), field="retention") from None


class SourceService:
    """Creates, changes and finds sources; see the module docstring."""

    def __init__(self, store: SourceStore, *, clock=time.monotonic):
        self.store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._by_key: dict[str, Source] = {}
        self._by_site: dict[str, Source] = {}
        self._loaded_at: float | None = None
        #: Called after a source's retention changed (the retention job runs early).
        self.on_retention_change: Callable[[], None] | None = None

    # -- the hot path ------------------------------------------------------------------------
    def _cache(self) -> tuple[dict[str, Source], dict[str, Source]]:
        loaded = self._loaded_at
        if loaded is None or self._clock() - loaded >= CACHE_SECONDS:
            self._reload()
        return self._by_key, self._by_site

    def _reload(self) -> None:
        with self._lock:
            now = self._clock()
            sources = self.store.list()
            # The built-in ``computed`` source is written by millpond only: its key opens
            # nothing.
            self._by_key = {s.write_key: s for s in sources if s.kind != "computed"}
            self._by_site = {s.site_id: s for s in sources if s.site_id and s.kind == "track"}
            self._loaded_at = now

    def by_write_key(self, key: str) -> Source | None:
        return self._cache()[0].get(key)

    def by_site_id(self, site_id: str) -> Source | None:
        return self._cache()[1].get(site_id)

    # -- reading -----------------------------------------------------------------------------
    def get(self, ref: str, *, deleted: bool = False) -> Source:
        """A source by id or by name; NotFound otherwise. With ``deleted``, a deleted
        source's tombstone too (by id, or by name when no live source has it): reading the
        events it left in the log."""
        try:
            return self.store.get(ref)
        except NotFound:
            if not deleted:
                raise
            found = [s for s in self.store.deleted() if ref in (s.id, s.name)]
            if not found:
                raise
            return next((s for s in found if s.id == ref), found[-1])

    def list(self) -> list[Source]:
        return self.store.list()

    def deleted(self) -> list[Source]:
        """Tombstones of deleted sources (see
        :class:`~millpond.storage.contracts.SourceStore`)."""
        return self.store.deleted()

    def origins(self) -> list[Source]:
        """Every source an event in the log may come from: the live ones, then the
        tombstones. What an event is (replayable or not) is read from here."""
        return self.store.list() + self.store.deleted()

    # -- changing ----------------------------------------------------------------------------
    def create(self, name: str, kind: str = "pipelines", replayable: bool | None = None,
               allowed_origins: list[str] | None = None, enabled: bool = True,
               retention: str = "forever") -> Source:
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            raise BadRequest("name must be a non-empty string of at most 100 characters",
                             field="name")
        if kind not in KINDS:
            raise BadRequest(f"kind must be one of {', '.join(KINDS)}; got {kind!r}",
                             field="kind")
        if replayable is None:
            replayable = DEFAULT_REPLAYABLE[kind]
        kept = _retention(retention)
        source = Source(id="src_" + secrets.token_hex(6), name=name.strip(), kind=kind,
                        write_key=secrets.token_urlsafe(24), replayable=bool(replayable),
                        site_id=secrets.token_hex(10) if kind == "track" else None,
                        created_at=time.time(), allowed_origins=_origins(allowed_origins),
                        enabled=bool(enabled), retention=kept)
        self.store.create(source)
        log.info("source %s created (%s, %s)", source.name, source.id, kind,
                 extra={"source_id": source.id, "phase": "created"})
        self._reload()
        if kept != "forever":
            self._retention_changed()
        return source

    def _retention_changed(self) -> None:
        if self.on_retention_change is not None:
            self.on_retention_change()

    def update(self, ref: str, *, name: str | None = None, replayable: bool | None = None,
               allowed_origins: object = _UNSET, enabled: bool | None = None,
               retention: str | None = None) -> Source:
        """Change the given fields; ``allowed_origins=None`` means any origin again."""
        source = self.store.get(ref)
        changes: dict[str, Any] = {}
        if name is not None:
            if not isinstance(name, str) or not name.strip():
                raise BadRequest("name must be a non-empty string", field="name")
            changes["name"] = name.strip()
        if replayable is not None:
            changes["replayable"] = bool(replayable)
        if allowed_origins is not _UNSET:
            changes["allowed_origins"] = _origins(allowed_origins)
        if enabled is not None:
            changes["enabled"] = bool(enabled)
        if retention is not None:
            changes["retention"] = _retention(retention)
        if changes:
            source = self.store.update(msgspec.structs.replace(source, **changes))
            log.info("source %s changed: %s", source.name, ", ".join(changes),
                     extra={"source_id": source.id, "phase": "changed"})
        self._reload()
        if "retention" in changes:
            self._retention_changed()
        return source

    def rotate_key(self, ref: str) -> Source:
        source = self.store.get(ref)
        source = self.store.update(msgspec.structs.replace(
            source, write_key=secrets.token_urlsafe(24)))
        log.info("source %s: write key rotated (the old one is refused from now on)",
                 source.name, extra={"source_id": source.id, "phase": "key_rotated"})
        self._reload()
        return source

    def delete(self, ref: str) -> Source:
        """Stop accepting data for a source; its stored events stay in the log, and the
        store keeps its tombstone (what it was) for them; the returned record is that."""
        source = self.store.delete(self.store.get(ref).id)
        log.info("source %s deleted (%s): its events stay in the log", source.name, source.id,
                 extra={"source_id": source.id, "phase": "deleted"})
        self._reload()
        return source
