"""``/api/regulations``: suppress or delete a person everywhere millpond keeps or sends
data (see :mod:`millpond.regulations`). A suppression is in force when the answer comes;
a deletion runs in the background, its status per store and per destination in the
answer of ``GET /api/regulations/{id}``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from millpond.api.deps import require_admin, services
from millpond.api.models import RegulationCreate, RegulationList, RegulationOut
from millpond.api.schema import body, doc
from millpond.app.services import Services
from millpond.regulations.present import present
from millpond.storage.models import RegulationType

router = APIRouter(prefix="/api/regulations", tags=["regulations"],
                   dependencies=[Depends(require_admin)])

_EXAMPLE = {"type": "suppress_with_delete", "user_ids": ["user-42"],
            "requested_by": "privacy@example.com (ticket 1234)"}


@router.post("", **doc(RegulationOut, request=RegulationCreate, status=201, errors=(415,),
                       example=_EXAMPLE))
async def create_regulation(given: RegulationCreate = body(RegulationCreate, _EXAMPLE),
                            mp: Services = Depends(services)) -> dict:
    """Accept a regulation for the whole people the ids belong to. ``suppress``: from
    now on nothing of theirs is stored or sent (the collector still answers 200);
    ``delete``: their events, rejections, dead letters, profile, segment rows and
    warehouse rows are removed and destinations with a deletion API are asked to delete
    them; ``suppress_with_delete``: both; ``unsuppress``: lift a suppression."""
    requested_by = given.requested_by if isinstance(given.requested_by, str) else "api"
    reg = await mp.regulations.create(RegulationType(given.type), given.user_ids,
                                      given.anonymous_ids, requested_by)
    return present(reg, mp.storage.destinations)


@router.get("", **doc(RegulationList))
def list_regulations(limit: int = Query(default=100, ge=1, le=1000),
                     mp: Services = Depends(services)) -> dict:
    """Newest first."""
    return {"regulations": [present(r, mp.storage.destinations)
                            for r in mp.regulations.list(limit)]}


@router.get("/{regulation_id}", **doc(RegulationOut, errors=(404,)))
def show_regulation(regulation_id: str, mp: Services = Depends(services)) -> dict:
    """One regulation: who asked and when, what it resolved to, and each store's and
    destination's status with the counts removed."""
    return present(mp.regulations.get(regulation_id), mp.storage.destinations)
