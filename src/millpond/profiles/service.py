"""Finding people: the one implementation behind ``GET /api/people``, the CLI's
``people list|search`` (through that route) and the console's People page."""

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
