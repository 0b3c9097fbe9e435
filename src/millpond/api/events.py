"""``/api/events`` and ``/api/rejections``: reading the log and what the collector refused.

Stored bodies are spliced into the answer as raw JSON (``StoredEvent.json``): the log
already holds each event's final bytes, so decoding and re-encoding them would only cost
time.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from millpond.api.deps import require_admin, services
from millpond.api.models import EventPage, RejectionPage
from millpond.api.schema import CURSOR, TIME_BOUND, cursor_value, doc
from millpond.app.services import Services
from millpond.storage.models import EventQuery
from millpond.timeutil import parse_time_bound

EventType = Literal["identify", "track", "page", "screen", "group", "alias"]

router = APIRouter(prefix="/api", tags=["events"], dependencies=[Depends(require_admin)])


@router.get("/events", **doc(EventPage, errors=(404,), params={
    "from": TIME_BOUND, "to": TIME_BOUND, "received_from": TIME_BOUND,
    "received_to": TIME_BOUND, "cursor": CURSOR}))
async def list_events(
    source: list[str] | None = Query(default=None, description="source id or name (repeatable)"),
    # Typed: a typo ("tracks", "Track") is refused, not answered with an empty page.
    type: list[EventType] | None = Query(default=None,
                                         description="event type (repeatable)"),
    event: str | None = Query(default=None, description="track event name or page/screen name"),
    user_id: str | None = None,
    from_: str | None = Query(default=None, alias="from", description="event time >= (ISO)"),
    to: str | None = Query(default=None, description="event time < (ISO)"),
    received_from: str | None = None,
    received_to: str | None = None,
    cursor: str | None = Query(default=None, description="next_cursor of the previous page"),
    order: Literal["asc", "desc"] = "asc",
    limit: int = Query(default=100, ge=1, le=1000),
    wait: float = Query(default=0, ge=0, le=60, description="long-poll seconds when empty"),
    message_id: str | None = Query(default=None, description="the event with this messageId "
                                   "(of the given sources, else of any, deleted ones too)"),
    mp: Services = Depends(services),
) -> Response:
    # A deleted source's events stay in the log: its id (or its name, if no live source
    # took it) still selects them.
    source_ids = [mp.sources.get(s, deleted=True).id for s in source] if source else None
    if message_id is not None:
        found = [e for sid in source_ids or [s.id for s in mp.sources.origins()]
                 if (e := await mp.log.find(sid, message_id)) is not None]
        return Response(b'{"events":[' + b",".join(e.json() for e in found)
                        + b'],"next_cursor":null}', media_type="application/json")
    after = cursor_value(cursor)
    q = EventQuery(source_ids=source_ids, types=list(type) if type else None,
                   event_name=event, user_id=user_id,
                   ts_from=parse_time_bound(from_, "from"), ts_to=parse_time_bound(to, "to"),
                   received_from=parse_time_bound(received_from, "received_from"),
                   received_to=parse_time_bound(received_to, "received_to"),
                   descending=order == "desc", limit=limit)
    if q.descending:
        q.before_seq = after
    else:
        q.after_seq = after
    index = mp.storage.index
    snapshot = mp.log.last_seq()
    rows = await index.query(q)
    if not rows and wait and not q.descending:
        snapshot = await mp.log.wait(max(after or 0, snapshot), wait)
        rows = await index.query(q)
    if rows:
        next_cursor = rows[-1].seq
    elif q.descending:
        next_cursor = None
    else:  # nothing (more) matches up to the snapshot: continue from there
        next_cursor = max(after or 0, snapshot)
    body = b'{"events":[' + b",".join(e.json() for e in rows) + b'],"next_cursor":' + (
        b'"%d"' % next_cursor if next_cursor is not None else b"null") + b"}"
    return Response(body, media_type="application/json")


@router.get("/rejections", **doc(RejectionPage, errors=(404,), params={"cursor": CURSOR}))
def list_rejections(source: str | None = None, cursor: str | None = None,
                    limit: int = Query(default=100, ge=1, le=1000),
                    mp: Services = Depends(services)) -> dict:
    source_id = mp.sources.get(source).id if source else None
    rows = mp.storage.rejections.list(source_id, cursor_value(cursor) or 0, limit)
    out = [{"id": r.id, "source_id": r.source_id, "received_ms": r.received_ms,
            "index": r.index, "code": r.code, "reason": r.reason, "field": r.field,
            "body": r.body.decode(errors="replace")} for r in rows]
    return {"rejections": out, "next_cursor": str(out[-1]["id"]) if out else cursor}
