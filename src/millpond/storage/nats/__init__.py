"""The log on NATS JetStream: the scale-out backend's event log (#18).

Only the log: its forever dedupe table, its index and the state stores are on PostgreSQL
(``storage/postgres``); :func:`millpond.storage.cluster.open_cluster_storage` opens both
halves together, the cluster benchmark opens the log alone (:func:`open_log`).
"""

from millpond.storage.nats.dedupe import DedupeTable, LogTable
from millpond.storage.nats.log import JetStreamEventLog
from millpond.storage.nats.settings import LogSettings
from millpond.storage.nats.stream import StreamMisconfigured


def open_log(settings: LogSettings, dedupe: LogTable | None = None) -> JetStreamEventLog:
    """Connect, create or check the stream, and return the log (deduping forever,
    indexing, answering ``find`` and expiring with the table ``dedupe``; deduping inside
    the stream's window only without)."""
    return JetStreamEventLog(settings, dedupe)


__all__ = ["DedupeTable", "JetStreamEventLog", "LogSettings", "LogTable", "StreamMisconfigured",
           "open_log"]
