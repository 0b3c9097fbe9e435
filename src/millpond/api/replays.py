"""``/api/replays``: preview (``dry_run``), start, watch, pause, resume and cancel replays.

Bodies are plain JSON validated by :mod:`millpond.replays.plan`, so each refusal
comes back with its reason and the field at fault (DESIGN.md "Errors").
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import JSONResponse

from millpond.api.deps import require_admin, services
from millpond.app.services import Services

router = APIRouter(prefix="/api", tags=["replays"], dependencies=[Depends(require_admin)])

_EXAMPLE = {"destination": "Amplitude", "sources": ["web"], "from": "2024-01-01T00:00:00Z",
            "to": None, "filter": 'type = "track"', "rate": None, "dry_run": True}


@router.post("/replays")
async def create_replay(body: Any = Body(..., examples=[_EXAMPLE]),
                        mp: Services = Depends(services)) -> Any:
    """Start a replay (201), or with ``"dry_run": true`` preview it without sending (200).

    ``to`` defaults to when the destination was connected and only events that arrived
    before then are included (live delivery covers the rest); ``"include_live": true``
    includes them too. ``rate`` defaults to, and may not exceed, the destination's limit."""
    answer = await mp.replays.create(body)
    return JSONResponse(answer, status_code=200 if answer.get("dry_run") else 201)


@router.get("/replays")
def list_replays(destination: str | None = Query(None), mp: Services = Depends(services)) -> dict:
    return {"replays": mp.replays.list(destination)}


@router.get("/replays/{replay_id}")
def show_replay(replay_id: str, mp: Services = Depends(services)) -> dict:
    return mp.replays.get(replay_id)


@router.post("/replays/{replay_id}/pause")
async def pause_replay(replay_id: str, mp: Services = Depends(services)) -> dict:
    return await mp.replays.pause(replay_id)


@router.post("/replays/{replay_id}/resume")
async def resume_replay(replay_id: str, mp: Services = Depends(services)) -> dict:
    return await mp.replays.resume(replay_id)


@router.post("/replays/{replay_id}/cancel")
async def cancel_replay(replay_id: str, mp: Services = Depends(services)) -> dict:
    return await mp.replays.cancel(replay_id)
