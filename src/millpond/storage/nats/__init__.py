"""The log on NATS JetStream: the scale-out backend's event log (#18).

Only the log: its state stores and forever dedupe table are on PostgreSQL
(``storage/postgres``), the index is not built yet, so :func:`millpond.storage.open_storage`
does not offer this backend; tests and the cluster benchmark open the log directly
(:func:`open_log`).
"""

from millpond.storage.nats.dedupe import DedupeTable
from millpond.storage.nats.log import JetStreamEventLog
from millpond.storage.nats.settings import LogSettings
from millpond.storage.nats.stream import StreamMisconfigured


def open_log(settings: LogSettings, dedupe: DedupeTable | None = None) -> JetStreamEventLog:
    """Connect, create or check the stream, and return the log (deduping forever and
    answering ``find`` with ``dedupe``, inside the stream's window only without)."""
    return JetStreamEventLog(settings, dedupe)


__all__ = ["DedupeTable", "JetStreamEventLog", "LogSettings", "StreamMisconfigured", "open_log"]
