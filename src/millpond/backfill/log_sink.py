"""A sink that appends straight into the log, for imports run inside the server.

It applies exactly the collector's per-message validation (``normalize``), so an
event imported by upload and one posted to ``/v1/import`` are stored the same way.
"""

from __future__ import annotations

import time
from typing import Any

from millpond.backfill.sinks import SinkResult
from millpond.collector.timestamps import format_ms
from millpond.collector.validation import MessageRejected, normalize
from millpond.log.base import EventLog


class LogSink:
    def __init__(self, log: EventLog, source_id: str):
        self.log = log
        self.source_id = source_id

    def send(self, events: list[dict[str, Any]]) -> SinkResult:
        received_ms = int(time.time() * 1000)
        received_at = format_ms(received_ms)
        valid = []
        rejected: list[tuple[int, str]] = []
        for index, event in enumerate(events):
            try:
                valid.append(normalize(event, source_id=self.source_id, received_ms=received_ms,
                                       received_at=received_at))
            except MessageRejected as exc:
                rejected.append((index, f"{exc.code}: {exc.reason}"))
        result = self.log.append_sync(valid) if valid else None
        if result is None:
            return SinkResult(0, rejected, 0)
        return SinkResult(result.stored, rejected, result.duplicates)
