"""The scale-out backend's stores opened together (:class:`~millpond.storage.contracts.Storage`):
the log on a JetStream stream (``storage/nats``), its index, the state, profiles,
segments and regulations on PostgreSQL (``storage/postgres``), one schema per place.

Why a place names both the stream and the schema: the two halves of one log (the
messages, and the index rows and dedupe keys written with them) must never be paired
with another's, so one name picks both.
"""

from __future__ import annotations

import contextlib

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

__all__ = ["ClusterStorage", "open_cluster_storage"]


class ClusterStorage:
    """Every store of the cluster backend on one log and one state database."""

    def __init__(self, log: JetStreamEventLog, state: PgState):
        self._state = state
        self.log = log
        self.health = StorageHealth()
        with state.deferred_tables():
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
        self.eraser = PgEraser(state, log.delete)
        self._closed = False

    def sizes(self) -> dict[str, int]:
        """The stream's bytes (one replica's) and the state schema's tables and indexes."""
        row = self._state.execute(
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) AS n FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND c.relkind = 'r'").fetchone()
        return {"stream": self.log.stream_size()[0], "state": 0 if row is None else int(row["n"])}

    def stream_state(self) -> StreamState:
        """The log's stream, its leader and replicas (``millpond cluster status``)."""
        return self.log.stream_state()

    def tiers(self) -> list[Tier]:
        """One tier, the stream (the archive on S3 is not part of this backend yet); its
        event-time span from the index."""
        size, messages = self.log.stream_size()
        row = self._state.execute("SELECT MIN(ts) AS lo, MAX(ts) AS hi FROM events").fetchone()
        lo, hi = (None, None) if row is None else (row["lo"], row["hi"])
        return [Tier("hot", size, messages, lo, hi)]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._state.close()
        finally:
            self.log.close()


def open_cluster_storage(servers: tuple[str, ...], dsn: str, place: str = "millpond",
                         settings: LogSettings | None = None) -> ClusterStorage:
    """Connect to NATS ``servers`` and PostgreSQL ``dsn`` and open every store in
    ``place`` (the stream's name and the schema's; ``settings`` for the rest of the
    stream's). Raises StorageUnavailable when either cannot be reached."""
    log_settings = settings or LogSettings(servers=servers, stream=place, subject=place)
    # The state first: an unreachable PostgreSQL then fails before the stream is created.
    state = PgState(dsn, schema=place)
    try:
        log = open_log(log_settings, PgDedupeTable(dsn, schema=place))
    except BaseException:
        state.close()
        raise
    try:
        return ClusterStorage(log, state)
    except BaseException:
        with contextlib.suppress(Exception):
            log.close()
        with contextlib.suppress(Exception):
            state.close()
        raise
