"""``/api/people/{id}``: a profile found by any of its ids, with each trait's time and source."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends

from millpond.api.deps import require_admin, services
from millpond.app.services import Services
from millpond.errors import NotFound

router = APIRouter(prefix="/api/people", tags=["people"], dependencies=[Depends(require_admin)])


@router.get("/{person_id}")
async def show_person(person_id: str, mp: Services = Depends(services)) -> dict:
    await mp.profile_follower.catch_up_once()  # read-your-writes for the caller
    person = await asyncio.to_thread(mp.profiles.get, person_id)
    if person is None:
        raise NotFound(f"no person with id {person_id!r} (user id, anonymous id or profile id)",
                       field="id")
    return person
