"""Finding people: the one implementation behind ``GET /api/people`` and
``GET /api/people/{id}``, the CLI's ``people`` commands (through those routes) and the
console's People pages."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from millpond.errors import BadRequest

if TYPE_CHECKING:
    from millpond.app.services import Services

MAX_LIMIT = 1000


async def people_search(mp: Services, query: str | None, cursor: str | None,
                        limit: int) -> dict:
    """``{"people": [...], "next_cursor": ...}``: people matching ``query`` (user id,
    anonymous id, email or any trait value; every person when empty), each as
    ``GET /api/people/{id}`` shows them. The profile follower catches up first, so what
    the caller just sent is found (read-your-writes, as ``GET /api/people/{id}``)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    await mp.profile_follower.catch_up_once()
    page = await asyncio.to_thread(mp.profiles.search, query or "", after=cursor or None,
                                   limit=limit)
    for person in page.people:  # as GET /api/people/{id} shows them: with their segments
        person["segments"] = mp.segments.person_segments(person["id"])
    return {"people": page.people, "next_cursor": page.next_cursor}


async def person_view(mp: Services, any_id: str) -> dict | None:
    """A person as ``GET /api/people/{id}`` shows them, found by any of their ids, with
    the segments they are in (None: no such person). Both followers catch up first, so
    what the caller just sent shows (read-your-writes)."""
    await mp.profile_follower.catch_up_once()
    person = await asyncio.to_thread(mp.profiles.get, any_id)
    if person is None:
        return None
    await mp.segment_engine.catch_up_once()
    person["segments"] = mp.segments.person_segments(person["id"])
    return person
