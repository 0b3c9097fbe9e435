"""``/api/destinations`` and ``/api/destination-types``: configure, inspect and test.

Bodies are taken as plain JSON objects and validated by :mod:`millpond.connections.config`,
not by pydantic models, so every mistake comes back with the field path as the API
spells it (``actions[1].trigger``, ``settings.api_secret``) and a correct example.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends

from millpond.api.deps import require_admin, services
from millpond.app.services import Services
from millpond.connections import config
from millpond.connections.lookup import event_at, find_event
from millpond.connections.present import destination_dict
from millpond.connections.tester import try_event
from millpond.destinations import catalog
from millpond.errors import BadRequest, NotFound

router = APIRouter(prefix="/api", tags=["destinations"], dependencies=[Depends(require_admin)])

_EXAMPLE = {"name": "Mixpanel prod", "type": "mixpanel",
            "settings": {"api_secret": "0123456789abcdef"},
            "rate_limit": {"events_per_second": 1000}}


def _object(body: Any, what: str) -> dict:
    if not isinstance(body, dict):
        raise BadRequest(f"{what} must be a JSON object")
    return body


async def _full(mp, dest) -> dict:
    return {**destination_dict(dest), "stats": await mp.pumps.stats(dest)}


@router.get("/destination-types")
def destination_types() -> dict:
    """The catalog: every type with its settings schema, defaults and preset actions."""
    return {"types": catalog()}


@router.get("/destinations")
async def list_destinations(mp: Services = Depends(services)) -> dict:
    return {"destinations": [await _full(mp, d) for d in mp.pumps.destinations.list()]}


@router.post("/destinations", status_code=201)
async def create_destination(body: Any = Body(..., examples=[_EXAMPLE]),
                             mp: Services = Depends(services)) -> dict:
    """Create a destination; leaving out ``actions`` gives the type's presets. Its live
    pump starts at the log's current tail (``connected_seq``)."""
    dest = await mp.pumps.create(_object(body, "a destination"))
    return await _full(mp, dest)


@router.get("/destinations/{ref}")
async def show_destination(ref: str, mp: Services = Depends(services)) -> dict:
    return await _full(mp, mp.pumps.destinations.get(ref))


@router.get("/destinations/{ref}/stats")
async def destination_stats(ref: str, mp: Services = Depends(services)) -> dict:
    dest = mp.pumps.destinations.get(ref)
    return {"id": dest.id, "name": dest.name, "stats": await mp.pumps.stats(dest)}


@router.patch("/destinations/{ref}")
async def update_destination(ref: str, body: Any = Body(...),
                             mp: Services = Depends(services)) -> dict:
    """Change name, settings (masked values sent back keep the stored secret),
    rate_limit, actions (``null``: back to the presets) or enabled."""
    dest = await mp.pumps.update(ref, _object(body, "a destination update"))
    return await _full(mp, dest)


@router.delete("/destinations/{ref}")
async def delete_destination(ref: str, mp: Services = Depends(services)) -> dict:
    return {"deleted": destination_dict(await mp.pumps.delete(ref))}


@router.post("/destinations/{ref}/enable")
async def enable_destination(ref: str, mp: Services = Depends(services)) -> dict:
    return await _full(mp, await mp.pumps.set_enabled(ref, True))


@router.post("/destinations/{ref}/disable")
async def disable_destination(ref: str, mp: Services = Depends(services)) -> dict:
    return await _full(mp, await mp.pumps.set_enabled(ref, False))


@router.post("/destinations/{ref}/retry-now")
async def retry_destination_now(ref: str, mp: Services = Depends(services)) -> dict:
    """Try the destination's waiting request again at once, instead of after the vendor's
    ``Retry-After`` or the backoff (``retried_now`` false: it was not waiting). 409 when
    the destination is disabled."""
    return await mp.pumps.retry_now(ref)


@router.post("/destinations/{ref}/test")
async def test_destination(ref: str, body: Any = Body(..., examples=[{"message_id": "abc-123"}]),
                     mp: Services = Depends(services)) -> dict:
    """Run one event through the destination's actions without sending: body
    ``{"event": {...}}``, ``{"message_id": "..."}`` or ``{"seq": N}``."""
    body = _object(body, "the test body")
    unknown = sorted(set(body) - {"event", "message_id", "seq", "source"})
    if unknown:
        raise BadRequest(f"unknown field `{unknown[0]}`; give event, message_id or seq",
                         field=unknown[0])
    dest = mp.pumps.destinations.get(ref)
    if "event" in body:
        event = body["event"]
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise BadRequest('event must be a Segment message with a type, e.g. {"type": '
                             '"track", "event": "Order Completed", "userId": "u1"}',
                             field="event")
    elif "seq" in body:
        seq = body["seq"]
        if isinstance(seq, bool) or not isinstance(seq, int):
            raise BadRequest("seq must be an integer", field="seq")
        event = await event_at(mp.log, seq)
        if event is None:
            raise NotFound(f"no event with seq {seq}", field="seq")
    elif "message_id" in body:
        source_ids = [mp.sources.get(body["source"]).id] if body.get("source") else \
            [s.id for s in mp.sources.list()]
        event = await find_event(mp.log, source_ids, str(body["message_id"]))
        if event is None:
            raise NotFound(f"no stored event with messageId {body['message_id']!r}",
                           field="message_id")
    else:
        raise BadRequest('give {"event": {...}}, {"message_id": "..."} or {"seq": N}')
    rt = config.runtime(dest.type, dest.settings, dest.actions)
    return {"destination": dest.id, **try_event(rt, dest.settings, event)}
