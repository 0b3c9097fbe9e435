"""``/api/people``: people found by an id or a trait value, and ``/api/people/{id}``: a
profile found by any of its ids, with each trait's time and source."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from millpond.api.deps import require_admin, services
from millpond.api.models import PeoplePage, Person, SegmentWhy
from millpond.api.schema import CURSOR, cursor_value, doc
from millpond.app.services import Services
from millpond.errors import NotFound
from millpond.profiles.service import people_search, person_view

router = APIRouter(prefix="/api/people", tags=["people"], dependencies=[Depends(require_admin)])


@router.get("", **doc(PeoplePage, params={"cursor": CURSOR}))
async def list_people(
    query: str = Query(default="", description="user id, anonymous id, email or any trait "
                       "value (the start of it, or of a word of it; any case); empty: "
                       "everyone"),
    cursor: str | None = Query(default=None, description="next_cursor of the previous page"),
    limit: int = Query(default=50, ge=1, le=1000),
    mp: Services = Depends(services),
) -> dict:
    after = cursor_value(cursor)
    return await people_search(mp, query, None if after is None else str(after), limit)


@router.get("/{person_id}", **doc(Person, errors=(404,)))
async def show_person(person_id: str, mp: Services = Depends(services)) -> dict:
    person = await person_view(mp, person_id)
    if person is None:
        raise NotFound(f"no person with id {person_id!r} (user id, anonymous id or profile id)",
                       field="id")
    return person


@router.get("/{person_id}/segments/{key}", **doc(SegmentWhy, errors=(404,)))
async def person_segment_why(person_id: str, key: str, mp: Services = Depends(services)) -> dict:
    """Why the person is (or is not) in the segment: each condition with its value (the
    trait and the time that set it, the matching events), and their history there."""
    return await mp.segments.why(person_id, key)
