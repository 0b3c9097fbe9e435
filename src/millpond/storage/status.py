"""What ``millpond storage status``, ``GET /api/storage`` and the console's Overview show
of the log's tiers: one shape, built here for all three."""

from __future__ import annotations

from typing import Any

from millpond.storage.contracts import Storage
from millpond.timeutil import format_ms


def tier_status(storage: Storage) -> list[dict[str, Any]]:
    """Bytes, events, event-time span and bytes per event of each tier. Blocking."""
    return [{"name": t.name, "bytes": t.bytes, "events": t.events,
             "from": None if t.ts_min is None else format_ms(t.ts_min),
             "to": None if t.ts_max is None else format_ms(t.ts_max),
             "bytes_per_event": round(t.bytes / t.events, 1) if t.events else None}
            for t in storage.tiers()]
