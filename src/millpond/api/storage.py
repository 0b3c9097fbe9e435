"""``/api/storage``: what the log keeps, per tier (hot store, Parquet archive)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from millpond.api.deps import require_admin, services
from millpond.api.models import StorageStatus
from millpond.api.schema import doc
from millpond.app.services import Services
from millpond.timeutil import format_ms

router = APIRouter(prefix="/api/storage", tags=["storage"], dependencies=[Depends(require_admin)])


def storage_status(mp: Services) -> dict:
    """Bytes, events and event-time span per tier, and bytes per event."""
    return {"tiers": [{"name": t.name, "bytes": t.bytes, "events": t.events,
                       "from": None if t.ts_min is None else format_ms(t.ts_min),
                       "to": None if t.ts_max is None else format_ms(t.ts_max),
                       "bytes_per_event": round(t.bytes / t.events, 1) if t.events else None}
                      for t in mp.storage.tiers()]}


@router.get("", **doc(StorageStatus))
def show_storage(mp: Services = Depends(services)) -> dict:
    return storage_status(mp)
