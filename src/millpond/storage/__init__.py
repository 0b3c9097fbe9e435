"""Where millpond keeps its data, behind one set of contracts (:mod:`.contracts`).

Backends are subpackages, each implementing every contract: ``sqlite`` (the embedded
default: one data directory, zero set-up) and ``memory`` (dict-backed, for fast tests).
The scale-out backend is two packages, ``nats`` (the log on JetStream) and ``postgres``
(its dedupe table and index, and every other store), opened together by
:func:`millpond.storage.cluster.open_cluster_storage`; :func:`open_storage` offers it once
the server's settings name the engines (``serve --log nats://… --state postgresql://…``).
Nothing outside this package imports a backend; it calls :func:`open_storage`.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Literal, cast

import msgspec

from millpond.storage.contracts import LeaseStore, Storage
from millpond.storage.models import StreamState


class StorageConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Which backend, and where.

    ``synchronous``: the embedded store's durability, ``FULL`` (an acknowledged event
    survives a power loss) or ``NORMAL`` (it survives a process crash).

    ``archive``: where sealed ranges of the log go as Parquet files: a directory or
    ``s3://bucket/prefix`` (empty: the data dir's ``archive/``); ``archive_endpoint``: an
    S3-compatible endpoint URL (empty: AWS); ``archive_range``: events per range (0: no
    archive tier)."""

    backend: Literal["sqlite", "memory"] = "sqlite"
    data_dir: str = ".millpond"
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    archive: str = ""
    archive_endpoint: str = ""
    archive_range: int = 1_000_000
    #: The scale-out backend: NATS client URLs (``nats://h1:4222,h2:4222``) and a
    #: PostgreSQL URL; both empty: the backend above.
    log: str = ""
    state: str = ""
    #: The JetStream stream's name and the PostgreSQL schema's on the scale-out backend
    #: (several millpond clusters can share the engines).
    place: str = "millpond"

    @property
    def clustered(self) -> bool:
        """Whether the log and the state are the scale-out engines'."""
        return bool(self.log)


def nats_servers(text: str) -> tuple[str, ...]:
    """``nats://h1:4222,h2:4222`` (the scheme optional after the first) as one URL per
    server; ValueError when a part is not ``[nats://]host:port``."""
    out: list[str] = []
    for part in text.split(","):
        part = part.strip()
        rest = part.removeprefix("nats://")
        host, sep, port = rest.rpartition(":")
        if not (sep and host and port.isdigit() and 0 < int(port) < 65536
                and "/" not in rest and "@" not in rest):
            raise ValueError(part)
        out.append(f"nats://{rest}")
    return tuple(out)


def open_storage(config: StorageConfig, *, max_pending: int = 200_000,
                 max_group: int = 20_000) -> Storage:
    """Open every store of ``config``'s backend (creating what is missing).

    ``max_pending`` and ``max_group`` bound a log that queues appends for a writer (the
    embedded store): events waiting before :class:`~millpond.errors.Overloaded`, and
    events per commit. Server settings (``log_writer``), not storage settings, because
    they are about back-pressure; a backend without such a queue ignores them."""
    if config.clustered:
        from millpond.storage.cluster import open_cluster_storage

        return open_cluster_storage(nats_servers(config.log), config.state, config.place,
                                    archive=config.archive,
                                    archive_endpoint=config.archive_endpoint,
                                    archive_range=config.archive_range)
    if config.backend == "memory":
        from millpond.storage.memory import MemoryStorage

        return MemoryStorage()
    from millpond.storage.sqlite import SQLiteStorage

    return SQLiteStorage(Path(config.data_dir), synchronous=config.synchronous,
                         max_pending=max_pending, max_group=max_group,
                         archive=config.archive, archive_endpoint=config.archive_endpoint,
                         archive_range=config.archive_range)


def leases_of(storage: Storage) -> LeaseStore | None:
    """The leases of a scale-out backend (its processes share the work through them);
    None on a backend one process owns alone (the embedded store holds a lock instead)."""
    return cast("LeaseStore | None", getattr(storage, "leases", None))


def archiver_of(storage: Storage) -> Callable[[], Coroutine[Any, Any, None]] | None:
    """The scale-out backend's archiver job (run by the holder of the ``jobs`` lease); None
    on the other backends (the embedded store archives in a thread of its own) and on a
    cluster without an archive."""
    if getattr(storage, "archive", None) is None:
        return None
    return cast("Callable[[], Coroutine[Any, Any, None]] | None",
                getattr(storage, "archive_job", None))


def stream_state_of(storage: Storage) -> Callable[[], StreamState] | None:
    """How to read the scale-out log's stream state; None on the other backends."""
    return cast("Callable[[], StreamState] | None", getattr(storage, "stream_state", None))


__all__ = ["LeaseStore", "Storage", "StorageConfig", "archiver_of", "leases_of", "nats_servers",
           "open_storage", "stream_state_of"]
