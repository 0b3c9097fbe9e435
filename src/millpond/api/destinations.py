"""``/api/destinations`` and ``/api/destination-types``: configure, inspect and test.

Bodies are typed (:mod:`millpond.api.models`) and decoded by the shared converter; what
a type cannot say (the settings of the chosen type, triggers and mappings compile, each
action produces its required fields) is checked by :mod:`millpond.connections.config`. Either
way every mistake comes back with the field path as the API spells it
(``actions[1].trigger``, ``settings.api_secret``) and a correct example.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query
from msgspec import UNSET

from millpond.api.deps import require_admin, services
from millpond.api.models import (
    DeletedDestination,
    DestinationCreate,
    DestinationFull,
    DestinationList,
    DestinationPatch,
    DestinationStatsOut,
    DestinationTypes,
    EventsBehind,
    RetryingEvents,
    RetryNow,
    TestRequest,
    TestResult,
    to_dict,
)
from millpond.api.schema import body, doc
from millpond.app.services import Services
from millpond.connections import config
from millpond.connections.behind import events_behind
from millpond.connections.lookup import event_at, find_event
from millpond.connections.present import destination_dict
from millpond.connections.tester import try_event
from millpond.destinations import catalog
from millpond.errors import BadRequest, NotFound

router = APIRouter(prefix="/api", tags=["destinations"], dependencies=[Depends(require_admin)])

_EXAMPLE = {"name": "Mixpanel prod", "type": "mixpanel",
            "settings": {"api_secret": "0123456789abcdef"},
            "rate_limit": {"events_per_second": 1000}}


async def _full(mp, dest) -> dict:
    return {**destination_dict(dest), "stats": await mp.pumps.stats(dest)}


@router.get("/destination-types", **doc(DestinationTypes))
def destination_types() -> dict:
    """The catalog: every type with its settings schema, defaults and preset actions."""
    return {"types": catalog()}


@router.get("/destinations", **doc(DestinationList))
async def list_destinations(mp: Services = Depends(services)) -> dict:
    return {"destinations": [await _full(mp, d) for d in mp.pumps.destinations.list()]}


@router.post("/destinations", **doc(DestinationFull, request=DestinationCreate, status=201,
                                   errors=(409, 415), example=_EXAMPLE))
async def create_destination(new: DestinationCreate = body(DestinationCreate, _EXAMPLE),
                             mp: Services = Depends(services)) -> dict:
    """Create a destination; leaving out ``actions`` gives the type's presets. Its live
    pump starts at the log's current tail (``connected_seq``)."""
    dest = await mp.pumps.create(to_dict(new))
    return await _full(mp, dest)


@router.get("/destinations/{ref}", **doc(DestinationFull, errors=(404,)))
async def show_destination(ref: str, mp: Services = Depends(services)) -> dict:
    return await _full(mp, mp.pumps.destinations.get(ref))


@router.get("/destinations/{ref}/stats", **doc(DestinationStatsOut, errors=(404,)))
async def destination_stats(ref: str, mp: Services = Depends(services)) -> dict:
    dest = mp.pumps.destinations.get(ref)
    return {"id": dest.id, "name": dest.name, "stats": await mp.pumps.stats(dest)}


@router.get("/destinations/{ref}/outcomes", **doc(EventsBehind, errors=(400, 404)))
async def destination_outcomes(
    ref: str,
    step: Literal["received", "matched", "mapped", "sent", "skipped", "dead_lettered"] = Query(
        description="the funnel step whose events to list"),
    run: str = Query(default="live", description="'live' (live delivery and redrives) or "
                                                 "the id of one of the destination's replays"),
    action: str = Query(default="", description="the action (empty: event-level skips)"),
    reason: str | None = Query(default=None, description="skipped: the reason; "
                               "dead_lettered: the category (e.g. 'HTTP 400'); else all"),
    cursor: str | None = Query(default=None, description="next_cursor of the previous page"),
    limit: int = Query(default=50, ge=1, le=1000),
    mp: Services = Depends(services),
) -> dict:
    """The events behind one count of the delivery funnel, most recently finished first:
    received, matched, mapped, sent, skipped or dead-lettered (by reason), per action.
    Events finished more than ``kept_days`` (``delivery.outcome_retention_days``) ago are
    no longer listed; ``older_unlisted`` says the count may include such events."""
    dest = mp.pumps.destinations.get(ref)
    return await events_behind(mp.pumps.runs, mp.log, dest, run=run, step=step, action=action,
                               reason=reason, cursor=cursor, limit=limit,
                               kept_days=mp.config.delivery.outcome_retention_days)


@router.get("/destinations/{ref}/retrying", **doc(RetryingEvents, errors=(400, 404)))
async def destination_retrying(
    ref: str,
    run: str = Query(default="live", description="'live' (live delivery and redrives) or "
                                                 "the id of one of the destination's replays"),
    action: str | None = Query(default=None, description="only this action's events"),
    limit: int = Query(default=100, ge=1, le=1000),
    mp: Services = Depends(services),
) -> dict:
    """The events the destination holds for a next attempt right now (its vendor failed
    and the pump retries), by seq: each with its failed attempts, the next attempt's time
    and the vendor's last answer. They are the funnel's "retrying now"; once one ends it
    is counted (and listed by ``/outcomes``) as sent or dead-lettered."""
    return await mp.pumps.retrying(ref, run=run, action=action, limit=limit)


@router.patch("/destinations/{ref}", **doc(DestinationFull, request=DestinationPatch,
                                          errors=(404, 409, 415),
                                          example={"rate_limit": {"events_per_second": 50}}))
async def update_destination(ref: str, change: DestinationPatch = body(DestinationPatch),
                             mp: Services = Depends(services)) -> dict:
    """Change name, settings (masked values sent back keep the stored secret),
    rate_limit, actions (``null``: back to the presets) or enabled."""
    dest = await mp.pumps.update(ref, to_dict(change))
    return await _full(mp, dest)


@router.delete("/destinations/{ref}", **doc(DeletedDestination, errors=(404,)))
async def delete_destination(ref: str, mp: Services = Depends(services)) -> dict:
    return {"deleted": destination_dict(await mp.pumps.delete(ref))}


@router.post("/destinations/{ref}/enable", **doc(DestinationFull, errors=(404,)))
async def enable_destination(ref: str, mp: Services = Depends(services)) -> dict:
    return await _full(mp, await mp.pumps.set_enabled(ref, True))


@router.post("/destinations/{ref}/disable", **doc(DestinationFull, errors=(404,)))
async def disable_destination(ref: str, mp: Services = Depends(services)) -> dict:
    return await _full(mp, await mp.pumps.set_enabled(ref, False))


@router.post("/destinations/{ref}/retry-now", **doc(RetryNow, errors=(404, 409)))
async def retry_destination_now(ref: str, mp: Services = Depends(services)) -> dict:
    """Try the destination's waiting request again at once, instead of after the vendor's
    ``Retry-After`` or the backoff (``retried_now`` false: it was not waiting). 409 when
    the destination is disabled. On a cluster, a process that does not deliver it asks
    the one that does, which retries within a third of ``lease_seconds``."""
    return await mp.pumps.retry_now(ref)


@router.post("/destinations/{ref}/test", **doc(TestResult, request=TestRequest,
                                               errors=(404, 415),
                                               example={"message_id": "abc-123"}))
async def test_destination(ref: str, given: TestRequest = body(TestRequest),
                           mp: Services = Depends(services)) -> dict:
    """Run one event through the destination's actions without sending: body
    ``{"event": {...}}``, ``{"message_id": "..."}`` or ``{"seq": N}``."""
    dest = mp.pumps.destinations.get(ref)
    if given.event is not UNSET:
        event = given.event
        if not isinstance(event.get("type"), str):
            raise BadRequest('event must be a Segment message with a type, e.g. {"type": '
                             '"track", "event": "Order Completed", "userId": "u1"}',
                             field="event")
    elif given.seq is not UNSET:
        event = await event_at(mp.log, given.seq)
        if event is None:
            raise NotFound(f"no event with seq {given.seq}", field="seq")
    elif given.message_id is not UNSET:
        source_ids = [mp.sources.get(given.source, deleted=True).id] if given.source else \
            [s.id for s in mp.sources.origins()]
        event = await find_event(mp.log, source_ids, given.message_id)
        if event is None:
            raise NotFound(f"no stored event with messageId {given.message_id!r}",
                           field="message_id")
    else:
        raise BadRequest('give {"event": {...}}, {"message_id": "..."} or {"seq": N}')
    rt = config.runtime(dest.type, dest.settings, dest.actions)
    return {"destination": dest.id, **try_event(rt, dest.settings, event)}
