"""Sources, destinations, import jobs and rejections in dicts (thread-safe, not durable).

Records are immutable Structs or copies, so nothing a caller holds changes under it and
nothing it changes reaches the store without a write, as with a database.
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
from collections.abc import Sequence

import msgspec

from millpond.errors import BadRequest, Conflict, NotFound
from millpond.storage.models import Destination, ImportJob, Regulation, Rejection, Source


class MemorySourceStore:
    """:class:`~millpond.storage.contracts.SourceStore` in a dict."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, Source] = {}
        self._tombstones: dict[str, Source] = {}

    def _check(self, source: Source) -> None:
        for other in self._by_id.values():
            if other.id == source.id:
                continue
            if other.name == source.name:
                raise Conflict(f"a source named {source.name!r} already exists", field="name")
            if other.write_key == source.write_key:
                raise Conflict("that write key is taken", field="write_key")

    def create(self, source: Source) -> Source:
        with self._lock:
            if source.id in self._by_id or source.id in self._tombstones:
                raise Conflict(f"a source with id {source.id!r} already exists", field="id")
            self._check(source)
            self._by_id[source.id] = source
        return source

    def get(self, ref: str) -> Source:
        with self._lock:
            found = self._by_id.get(ref) or next(
                (s for s in self._by_id.values() if s.name == ref), None)
        if found is None:
            raise NotFound(f"no source {ref!r}", field="source")
        return found

    def by_write_key(self, write_key: str) -> Source | None:
        with self._lock:
            return next((s for s in self._by_id.values() if s.write_key == write_key), None)

    def by_site_id(self, site_id: str) -> Source | None:
        with self._lock:
            return next((s for s in self._by_id.values()
                         if s.site_id == site_id and s.kind == "track"), None)

    def list(self) -> list[Source]:
        with self._lock:
            return sorted(self._by_id.values(), key=lambda s: s.created_at)

    def update(self, source: Source) -> Source:
        with self._lock:
            if source.id not in self._by_id:
                raise NotFound(f"no source {source.id!r}", field="source")
            self._check(source)
            self._by_id[source.id] = source
        return source

    def delete(self, source_id: str) -> Source:
        with self._lock:
            found = self._by_id.pop(source_id, None)
            if found is not None:
                found = msgspec.structs.replace(found, deleted_at=time.time())
                self._tombstones[source_id] = found
        if found is None:
            raise NotFound(f"no source {source_id!r}", field="source")
        return found

    def deleted(self) -> list[Source]:
        with self._lock:
            return sorted(self._tombstones.values(), key=lambda s: s.deleted_at or 0.0)


class MemoryDestinationStore:
    """:class:`~millpond.storage.contracts.DestinationStore` in a dict."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, Destination] = {}

    def _check(self, dest: Destination) -> None:
        if any(o.name == dest.name and o.id != dest.id for o in self._by_id.values()):
            raise Conflict(f"a destination named {dest.name!r} already exists", field="name")

    def create(self, destination: Destination) -> Destination:
        with self._lock:
            if destination.id in self._by_id:
                raise Conflict(f"a destination with id {destination.id!r} already exists",
                               field="id")
            self._check(destination)
            self._by_id[destination.id] = copy.deepcopy(destination)
        return destination

    def get(self, ref: str) -> Destination:
        with self._lock:
            found = self._by_id.get(ref) or next(
                (d for d in self._by_id.values() if d.name == ref), None)
            found = copy.deepcopy(found)
        if found is None:
            raise NotFound(f"no destination {ref!r}", field="destination")
        return found

    def list(self) -> list[Destination]:
        with self._lock:
            return copy.deepcopy(sorted(self._by_id.values(), key=lambda d: d.connected_at))

    def update(self, destination: Destination) -> Destination:
        with self._lock:
            if destination.id not in self._by_id:
                raise NotFound(f"no destination {destination.id!r}", field="destination")
            self._check(destination)
            self._by_id[destination.id] = copy.deepcopy(destination)
        return destination

    def delete(self, destination_id: str) -> Destination:
        with self._lock:
            found = self._by_id.pop(destination_id, None)
        if found is None:
            raise NotFound(f"no destination {destination_id!r}", field="destination")
        return found


class MemoryImportJobStore:
    """:class:`~millpond.storage.contracts.ImportJobStore` in a dict."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, ImportJob] = {}

    def create(self, job: ImportJob) -> ImportJob:
        with self._lock:
            if job.id in self._by_id:
                raise BadRequest(f"an import with id {job.id!r} already exists", field="id")
            self._by_id[job.id] = copy.deepcopy(job)
        return job

    def get(self, job_id: str) -> ImportJob:
        with self._lock:
            found = copy.deepcopy(self._by_id.get(job_id))
        if found is None:
            raise NotFound(f"no import {job_id!r}", field="id")
        return found

    def list(self, limit: int = 100) -> list[ImportJob]:
        with self._lock:
            jobs = sorted(self._by_id.values(), key=lambda j: j.created_at, reverse=True)
            return copy.deepcopy(jobs[:limit])

    def update(self, job: ImportJob) -> ImportJob:
        with self._lock:
            if job.id not in self._by_id:
                raise NotFound(f"no import {job.id!r}", field="id")
            self._by_id[job.id] = copy.deepcopy(job)
        return job


class MemoryRejectionStore:
    """:class:`~millpond.storage.contracts.RejectionStore` in a list."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: list[Rejection] = []
        self._ids = itertools.count(1)

    def add(self, rejections: Sequence[Rejection]) -> None:
        with self._lock:
            for r in rejections:
                r.id = next(self._ids)
                self._rows.append(copy.copy(r))

    def forget(self, ids: Sequence[str]) -> int:
        """Remove the rejections whose body names any of ``ids``; how many."""
        needles = [i.encode() for i in ids]
        with self._lock:
            kept = [r for r in self._rows if not any(n in r.body for n in needles)]
            gone = len(self._rows) - len(kept)
            self._rows = kept
        return gone

    def list(self, source_id: str | None, after_id: int, limit: int) -> list[Rejection]:
        with self._lock:
            rows = [copy.copy(r) for r in self._rows
                    if r.id > (after_id or 0) and (not source_id or r.source_id == source_id)]
        return rows[:limit]


class MemoryRegulationStore:
    """:class:`~millpond.storage.contracts.RegulationStore` in a dict (records copied in
    and out, as a database would)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[str, Regulation] = {}

    def create(self, regulation: Regulation) -> Regulation:
        with self._lock:
            self._rows[regulation.id] = copy.deepcopy(regulation)
        return regulation

    def get(self, regulation_id: str) -> Regulation:
        with self._lock:
            found = self._rows.get(regulation_id)
            if found is None:
                raise NotFound(f"no regulation {regulation_id!r}", field="id")
            return copy.deepcopy(found)

    def list(self, limit: int = 100) -> list[Regulation]:
        with self._lock:
            rows = sorted(self._rows.values(), key=lambda r: r.created_at, reverse=True)
            return [copy.deepcopy(r) for r in rows[:limit]]

    def update(self, regulation: Regulation) -> Regulation:
        with self._lock:
            if regulation.id not in self._rows:
                raise NotFound(f"no regulation {regulation.id!r}", field="id")
            self._rows[regulation.id] = copy.deepcopy(regulation)
        return regulation
