"""``/api/storage``: what the log keeps, per tier (hot store, Parquet archive)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends

from millpond.api.deps import require_admin, services
from millpond.api.models import StorageStatus
from millpond.api.schema import doc
from millpond.app.services import Services
from millpond.storage.status import tier_status

router = APIRouter(prefix="/api/storage", tags=["storage"], dependencies=[Depends(require_admin)])


@router.get("", **doc(StorageStatus))
async def show_storage(mp: Services = Depends(services)) -> dict:
    """Bytes, events and event-time span per tier (hot store, Parquet archive)."""
    return {"tiers": await asyncio.to_thread(tier_status, mp.storage)}
