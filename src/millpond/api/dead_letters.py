"""Dead letters: list per destination, show one, redrive all or some.

A redrive re-reads each event from the log and runs it through the destination's
*current* action (trigger and mapping again), so fixing the configuration and then
redriving is how a parked event gets delivered.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Path, Query

from millpond.api.deps import require_admin, services
from millpond.api.models import MAX_INT, DeadLetterOut, DeadLetterPage, RedriveOut, RedriveRequest
from millpond.api.schema import body, doc
from millpond.app.services import Services
from millpond.connections.present import dead_letter_dict
from millpond.storage.models import DeadLetterState

router = APIRouter(prefix="/api", tags=["dead letters"], dependencies=[Depends(require_admin)])


@router.get("/destinations/{ref}/dead-letters", **doc(DeadLetterPage, errors=(404,)))
def list_dead_letters(ref: str,
                      state: Literal["dead", "redriving", "redriven", "all"] = Query(
                          default="dead", description="dead, redriving, redriven or all"),
                      cursor: int = Query(default=0, ge=0, le=MAX_INT,
                                          description="next_cursor of the previous page"),
                      limit: int = Query(default=100, ge=1, le=1000),
                      mp: Services = Depends(services)) -> dict:
    dest = mp.pumps.destinations.get(ref)
    rows = mp.pumps.runs.dead_letters(
        dest.id, state=None if state == "all" else DeadLetterState(state), after_id=cursor,
        limit=limit)
    return {"dead_letters": [dead_letter_dict(r) for r in rows],
            "next_cursor": rows[-1].id if len(rows) == limit else None}


@router.get("/dead-letters/{dead_letter_id}", **doc(DeadLetterOut, errors=(404,)))
def show_dead_letter(dead_letter_id: int = Path(ge=0, le=MAX_INT),
                     mp: Services = Depends(services)) -> dict:
    return dead_letter_dict(mp.pumps.runs.dead_letter(dead_letter_id))


@router.post("/destinations/{ref}/dead-letters/redrive",
             **doc(RedriveOut, request=RedriveRequest, status=202, errors=(404, 409, 415),
                   example={"ids": [1, 2]}))
async def redrive(ref: str, given: RedriveRequest = body(RedriveRequest, {"ids": [1, 2]}),
                  mp: Services = Depends(services)) -> dict:
    """Redrive every dead letter of the destination (empty body) or ``{"ids": [...]}``.
    Answers at once; delivery runs in the background behind live traffic."""
    return await mp.pumps.redrive(ref, given.ids)
