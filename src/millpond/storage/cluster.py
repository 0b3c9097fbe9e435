"""The scale-out backend's stores opened together (:class:`~millpond.storage.contracts.Storage`):
the log on a JetStream stream (``storage/nats``), its index, the state, profiles,
segments and regulations on PostgreSQL (``storage/postgres``), one schema per place, and,
when an archive place is given, the log's sealed ranges as Parquet files there
(``storage/postgres/archive.py``: the manifest is in the schema, the files in a bucket).

Why a place names both the stream and the schema: the two halves of one log (the
messages, and the index rows and dedupe keys written with them) must never be paired
with another's, so one name picks both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from millpond.storage.archive.place import open_place
from millpond.storage.health import StorageHealth
from millpond.storage.models import StreamState, Tier
from millpond.storage.nats import JetStreamEventLog, LogSettings, open_log
from millpond.storage.postgres import (
    PgDedupeTable,
    PgDestinationStore,
    PgEraser,
    PgEventIndex,
    PgImportJobStore,
    PgLeases,
    PgLoadStatsStore,
    PgProfileStore,
    PgRegulationStore,
    PgRejectionStore,
    PgRunStore,
    PgSegmentStore,
    PgSourceStore,
    PgState,
)
from millpond.storage.postgres.archive import PgArchive, StaleArchiver

__all__ = ["ClusterStorage", "open_cluster_storage"]

logger = logging.getLogger("millpond.storage")

#: Seconds between the archiver's looks at the stream's end.
ARCHIVE_EVERY = 1.0


class ClusterStorage:
    """Every store of the cluster backend on one log and one state database."""

    def __init__(self, log: JetStreamEventLog, state: PgState, archive: str = "",
                 archive_endpoint: str = "", archive_range: int = 0):
        self._state = state
        self.log = log
        self.health = StorageHealth()
        #: The archive tier (None: off, when no archive place is given).
        self.archive: PgArchive | None = None
        with state.deferred_tables():
            if archive and archive_range > 0:
                self.archive = PgArchive(state, open_place(archive, archive_endpoint),
                                         archive_range, log)
            self.index = PgEventIndex(state, log.fetch)
            self.sources = PgSourceStore(state)
            self.destinations = PgDestinationStore(state)
            self.runs = PgRunStore(state)
            self.load_stats = PgLoadStatsStore(state)
            self.imports = PgImportJobStore(state)
            self.rejections = PgRejectionStore(state)
            self.profiles = PgProfileStore(state)
            self.segments = PgSegmentStore(state)
            self.regulations = PgRegulationStore(state)
            self.leases = PgLeases(state)
        if self.archive is not None:
            self.archive.refresh()
            log.archive = self.archive
        self.eraser = PgEraser(state, log.delete)
        self._closed = False

    def sizes(self) -> dict[str, int]:
        """The stream's bytes (one replica's) and the state schema's tables and indexes."""
        out = {"stream": self.log.stream_size()[0], "state": self._state.schema_bytes()}
        if self.archive is not None:
            out["archive"] = sum(f.bytes for f in self.archive.files())
        return out

    def stream_state(self) -> StreamState:
        """The log's stream, its leader and replicas (``millpond cluster status``)."""
        return self.log.stream_state()

    def tiers(self) -> list[Tier]:
        """The stream (``hot``: its bytes and messages, the event-time span of the
        unarchived seqs from the index), then the archive when on (from its manifest)."""
        archive = self.archive
        if archive is not None:
            archive.refresh()
        upto = 0 if archive is None else archive.archived_upto()
        size, messages = self.log.stream_size()
        lo, hi = self.index.time_span_after(upto)
        tiers = [Tier("hot", size, messages, lo, hi)]
        if archive is not None:
            span = archive.span()
            tiers.append(Tier("archive", 0, 0, None, None) if span is None
                         else Tier("archive", span[1], span[0], span[2], span[3]))
        return tiers

    async def archive_job(self) -> None:
        """The archiver, run by the holder of the cluster's ``jobs`` lease (one process at
        a time): takes the archiver over (any archiver before it can list no more files;
        files an interrupted seal or rewrite left are removed), then seals every range the
        stream is past, looking again every :data:`ARCHIVE_EVERY` seconds. A failure (S3
        or a server away) leaves the range in the stream; it is tried again. Ends when
        another process has taken the archiver over (this one lost the lease)."""
        archive = self.archive
        if archive is None:
            return
        while True:
            try:
                await asyncio.to_thread(archive.take_over)
                break
            except Exception:  # noqa: BLE001 - tried again; nothing was lost
                logger.exception("archive: cannot take the archiver over; retrying in 5 s")
                await asyncio.sleep(5)
        while True:
            try:
                while await asyncio.to_thread(archive.seal_once) is not None:
                    pass
            except StaleArchiver:
                logger.warning("archive: another process archives now; this one stops")
                return
            except Exception:  # noqa: BLE001 - the range stays in the stream
                logger.exception("archiving failed; retrying in 5 s")
                await asyncio.sleep(5)
            await asyncio.sleep(ARCHIVE_EVERY)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._state.close()
        finally:
            self.log.close()


def open_cluster_storage(servers: tuple[str, ...], dsn: str, place: str = "millpond",
                         settings: LogSettings | None = None, *, archive: str = "",
                         archive_endpoint: str = "", archive_range: int = 0,
                         ) -> ClusterStorage:
    """Connect to NATS ``servers`` and PostgreSQL ``dsn`` and open every store in
    ``place`` (the stream's name and the schema's; ``settings`` for the rest of the
    stream's), with the archive tier in ``archive`` (``s3://bucket/prefix`` or a
    directory every process shares; ranges of ``archive_range`` events) when both are
    set. Raises StorageUnavailable when either server cannot be reached."""
    log_settings = settings or LogSettings(servers=servers, stream=place, subject=place)
    # The state first: an unreachable PostgreSQL then fails before the stream is created.
    state = PgState(dsn, schema=place)
    try:
        log = open_log(log_settings, PgDedupeTable(dsn, schema=place))
    except BaseException:
        state.close()
        raise
    try:
        return ClusterStorage(log, state, archive, archive_endpoint, archive_range)
    except BaseException:
        with contextlib.suppress(Exception):
            log.close()
        with contextlib.suppress(Exception):
            state.close()
        raise
