"""``/api/segments``: people who match conditions on traits and event history.

Bodies are typed (:mod:`millpond.api.models`); a definition's conditions are checked by
:mod:`millpond.segments.definition` (so the API, the CLI and the console share one set
of messages, each naming its field); bad input answers 400 and saves nothing."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request

from millpond.api.deps import require_admin, services
from millpond.api.models import (
    DeletedSegment,
    SegmentCreate,
    SegmentList,
    SegmentMembersPage,
    SegmentOut,
    SegmentPatch,
    SegmentPreview,
    SegmentPreviewOut,
    to_dict,
)
from millpond.api.schema import body, doc
from millpond.app.abandoned import unless_client_leaves
from millpond.app.services import Services

router = APIRouter(prefix="/api/segments", tags=["segments"],
                   dependencies=[Depends(require_admin)])

_EXAMPLE = {"key": "recent-buyers", "name": "Recent buyers",
            "definition": {"event": "Order Completed", "at_least": 2, "within": "30d"}}


@router.post("", **doc(SegmentOut, request=SegmentCreate, status=201, errors=(404, 409, 415),
                       example=_EXAMPLE))
async def create_segment(given: SegmentCreate = body(SegmentCreate, _EXAMPLE),
                         mp: Services = Depends(services)) -> dict:
    """Save a segment and start building it over the whole log (``state``: ``building``
    with ``progress``, then ``ready``)."""
    return await mp.segments.create(to_dict(given))


@router.post("/preview", **doc(SegmentPreviewOut, request=SegmentPreview, errors=(404, 415)))
async def preview_segment(request: Request, given: SegmentPreview = body(SegmentPreview),
                          sample: int = Query(default=10, ge=0, le=100),
                          mp: Services = Depends(services)) -> dict:
    """Count and a sample of the people a definition would hold now, and with ``person``
    why that person would be in it or not; saves nothing. It reads the whole log, and
    stops if the client goes away first."""
    return await unless_client_leaves(request, mp.segments.preview(to_dict(given), sample))


@router.get("", **doc(SegmentList))
def list_segments(mp: Services = Depends(services)) -> dict:
    return mp.segments.list()


@router.get("/{ref}", **doc(SegmentOut, errors=(404,)))
def show_segment(ref: str, mp: Services = Depends(services)) -> dict:
    """By id or key."""
    return mp.segments.get(ref)


@router.patch("/{ref}", **doc(SegmentOut, request=SegmentPatch, errors=(404, 409, 415)))
async def update_segment(ref: str, given: SegmentPatch = body(SegmentPatch),
                         mp: Services = Depends(services)) -> dict:
    """Rename, or change the definition (which rebuilds it)."""
    return await mp.segments.update(ref, to_dict(given))


@router.delete("/{ref}", **doc(DeletedSegment, errors=(404, 409)))
def delete_segment(ref: str, mp: Services = Depends(services)) -> dict:
    return mp.segments.delete(ref)


@router.get("/{ref}/members", **doc(SegmentMembersPage, errors=(404,)))
def segment_members(ref: str,
                    cursor: str | None = Query(default=None,
                                               description="next_cursor of the previous page"),
                    limit: int = Query(default=50, ge=1, le=1000),
                    mp: Services = Depends(services)) -> dict:
    """``{"people": [{"id", "user_id", "since"}], "next_cursor"}``."""
    return mp.segments.members(ref, cursor, limit)
