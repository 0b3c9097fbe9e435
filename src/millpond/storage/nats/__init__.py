"""The log on NATS JetStream: the scale-out backend's event log (#18).

Only the log so far: the state stores, the index and the forever dedupe table are the
PostgreSQL side, not built yet, so :func:`millpond.storage.open_storage` does not offer this
backend; tests and the cluster benchmark open the log directly (:func:`open_log`).
"""

from millpond.storage.nats.log import JetStreamEventLog
from millpond.storage.nats.settings import LogSettings
from millpond.storage.nats.stream import StreamMisconfigured


def open_log(settings: LogSettings) -> JetStreamEventLog:
    """Connect, create or check the stream, and return the log."""
    return JetStreamEventLog(settings)


__all__ = ["JetStreamEventLog", "LogSettings", "StreamMisconfigured", "open_log"]
