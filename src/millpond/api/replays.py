"""``/api/replays``: preview (``dry_run``), start, watch, pause, resume and cancel replays.

Bodies are typed (:class:`~millpond.api.models.ReplayRequest`); what depends on the
destination and its sources is checked by :mod:`millpond.replays.plan`, so each
refusal comes back with its reason and the field at fault (DESIGN.md "Errors").
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from millpond.api.deps import require_admin, services
from millpond.api.models import ReplayList, ReplayOut, ReplayRequest, to_dict
from millpond.api.schema import body, doc
from millpond.app.abandoned import unless_client_leaves
from millpond.app.services import Services

router = APIRouter(prefix="/api", tags=["replays"], dependencies=[Depends(require_admin)])

_EXAMPLE = {"destination": "Amplitude", "sources": ["web"], "from": "2024-01-01T00:00:00Z",
            "to": None, "filter": 'type = "track"', "rate": 50, "dry_run": True}


@router.post("/replays", **doc(ReplayOut, request=ReplayRequest, status=201, also=(200,),
                               errors=(404, 409, 415), example=_EXAMPLE))
async def create_replay(request: Request,
                        given: ReplayRequest = body(ReplayRequest, _EXAMPLE),
                        mp: Services = Depends(services)) -> Any:
    """Start a replay (201), or with ``"dry_run": true`` preview it without sending (200).

    ``to`` defaults to when the destination was connected and only events that arrived
    before then are included (live delivery covers the rest); ``"include_live": true``
    includes them too. ``rate`` defaults to, and may not exceed, the destination's limit."""
    asked = to_dict(given)
    # A dry run reads the whole window for its answer alone: stopped if nobody waits.
    # A start goes on (the replay runs on its own once created).
    answer = await (unless_client_leaves(request, mp.replays.create(asked))
                    if asked.get("dry_run") else mp.replays.create(asked))
    return JSONResponse(answer, status_code=200 if answer.get("dry_run") else 201)


@router.get("/replays", **doc(ReplayList, errors=(404,)))
def list_replays(destination: str | None = Query(None), mp: Services = Depends(services)) -> dict:
    return {"replays": mp.replays.list(destination)}


@router.get("/replays/{replay_id}", **doc(ReplayOut, errors=(404,)))
def show_replay(replay_id: str, mp: Services = Depends(services)) -> dict:
    return mp.replays.get(replay_id)


@router.post("/replays/{replay_id}/pause", **doc(ReplayOut, errors=(404, 409)))
async def pause_replay(replay_id: str, mp: Services = Depends(services)) -> dict:
    return await mp.replays.pause(replay_id)


@router.post("/replays/{replay_id}/resume", **doc(ReplayOut, errors=(404, 409)))
async def resume_replay(replay_id: str, mp: Services = Depends(services)) -> dict:
    return await mp.replays.resume(replay_id)


@router.post("/replays/{replay_id}/cancel", **doc(ReplayOut, errors=(404, 409)))
async def cancel_replay(replay_id: str, mp: Services = Depends(services)) -> dict:
    return await mp.replays.cancel(replay_id)
