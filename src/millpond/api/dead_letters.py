"""Dead letters: list per destination, show one, redrive all or some.

A redrive re-reads each event from the log and runs it through the destination's
*current* action (trigger and mapping again), so fixing the configuration and then
redriving is how a parked event gets delivered.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query

from millpond.api.deps import require_admin, services
from millpond.app.services import Services
from millpond.connections.present import dead_letter_dict
from millpond.errors import BadRequest
from millpond.storage.models import DeadLetterState

STATES = tuple(s.value for s in DeadLetterState)

router = APIRouter(prefix="/api", tags=["dead letters"], dependencies=[Depends(require_admin)])


@router.get("/destinations/{ref}/dead-letters")
def list_dead_letters(ref: str,
                      state: str = Query(default="dead",
                                         description="dead, redriving, redriven or all"),
                      cursor: int = Query(default=0, ge=0,
                                          description="next_cursor of the previous page"),
                      limit: int = Query(default=100, ge=1, le=1000),
                      mp: Services = Depends(services)) -> dict:
    if state != "all" and state not in STATES:
        raise BadRequest(f"state must be one of {', '.join(STATES)} or all; got {state!r}",
                         field="state")
    dest = mp.pumps.destinations.get(ref)
    rows = mp.pumps.runs.dead_letters(
        dest.id, state=None if state == "all" else DeadLetterState(state), after_id=cursor,
        limit=limit)
    return {"dead_letters": [dead_letter_dict(r) for r in rows],
            "next_cursor": rows[-1].id if len(rows) == limit else None}


@router.get("/dead-letters/{dead_letter_id}")
def show_dead_letter(dead_letter_id: int, mp: Services = Depends(services)) -> dict:
    return dead_letter_dict(mp.pumps.runs.dead_letter(dead_letter_id))


@router.post("/destinations/{ref}/dead-letters/redrive", status_code=202)
async def redrive(ref: str, body: Any = Body(default=None, examples=[{"ids": [1, 2]}]),
                  mp: Services = Depends(services)) -> dict:
    """Redrive every dead letter of the destination (empty body) or ``{"ids": [...]}``.
    Answers at once; delivery runs in the background behind live traffic."""
    ids = None
    if body is not None:
        if not isinstance(body, dict) or set(body) - {"ids"}:
            raise BadRequest('body must be {} or {"ids": [1, 2]}', field="ids")
        ids = body.get("ids")
        if ids is not None and (not isinstance(ids, list) or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in ids)):
            raise BadRequest("ids must be a list of dead-letter ids (integers)", field="ids")
    return await mp.pumps.redrive(ref, ids)
