"""``/api/segments``: people who match conditions on traits and event history.

Bodies are plain JSON objects validated by :mod:`millpond.segments` (so the API, the CLI
and the console share one set of messages, each naming its field); bad input answers
400 and saves nothing."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query

from millpond.api.deps import require_admin, services
from millpond.app.services import Services

router = APIRouter(prefix="/api/segments", tags=["segments"],
                   dependencies=[Depends(require_admin)])

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Bad input: {\"error\": {\"code\", \"message\", \"field\"}}"},
    401: {"description": "Missing or invalid admin token"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    **ERRORS, 404: {"description": "No such segment (or person)"}}
_DEFINITION = ('{"key": "recent-buyers", "name": "Recent buyers", "definition": {"event": '
               '"Order Completed", "at_least": 2, "within": "30d"}}')


@router.post("", status_code=201, responses={**ERRORS, 409: {"description": "Key taken"}})
async def create_segment(body: Any = Body(..., description=_DEFINITION),
                         mp: Services = Depends(services)) -> dict:
    """Save a segment and start building it over the whole log (``state``: ``building``
    with ``progress``, then ``ready``)."""
    return await mp.segments.create(body)


@router.post("/preview", responses=ERRORS)
async def preview_segment(body: Any = Body(..., description='{"definition": {...}}'),
                          sample: int = Query(default=10, ge=0, le=100),
                          mp: Services = Depends(services)) -> dict:
    """Count and a sample of the people a definition would hold now; saves nothing."""
    await mp.profile_follower.catch_up_once()
    return await mp.segments.preview(body, sample)


@router.get("", responses=ERRORS)
def list_segments(mp: Services = Depends(services)) -> dict:
    return mp.segments.list()


@router.get("/{ref}", responses=NOT_FOUND)
def show_segment(ref: str, mp: Services = Depends(services)) -> dict:
    """By id or key."""
    return mp.segments.get(ref)


@router.patch("/{ref}", responses={**NOT_FOUND, 409: {"description": "Conflict"}})
async def update_segment(ref: str, body: Any = Body(..., description='{"name", "definition"}'),
                         mp: Services = Depends(services)) -> dict:
    """Rename, or change the definition (which rebuilds it)."""
    return await mp.segments.update(ref, body)


@router.delete("/{ref}", responses={**NOT_FOUND, 409: {"description": "Referred to"}})
def delete_segment(ref: str, mp: Services = Depends(services)) -> dict:
    return mp.segments.delete(ref)


@router.get("/{ref}/members", responses=NOT_FOUND)
def segment_members(ref: str,
                    cursor: str | None = Query(default=None,
                                               description="next_cursor of the previous page"),
                    limit: int = Query(default=50, ge=1, le=1000),
                    mp: Services = Depends(services)) -> dict:
    """``{"people": [{"id", "user_id", "since"}], "next_cursor"}``."""
    return mp.segments.members(ref, cursor, limit)
