"""Finding people: the one implementation behind ``GET /api/people`` and
``GET /api/people/{id}``, the CLI's ``people`` commands (through those routes) and the
console's People pages."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from millpond.errors import BadRequest
from millpond.profiles.merge import profile_id_for

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
        person = await _seen_on_events(mp, any_id)
        if person is None:
            return None
    await mp.segment_engine.catch_up_once()
    person["segments"] = mp.segments.person_segments(person["id"])
    return person


async def _seen_on_events(mp: Services, any_id: str) -> dict | None:
    """A person no identify, group or alias named, so without a profile: an id events
    were sent with (a ``userId``, else an ``anonymousId``), or the profile id such an id
    has while they are in a segment (the id a segment's members and its Audience events
    give them, :func:`~millpond.profiles.merge.profile_id_for`). No traits, no groups.

    Why: an app that only tracks (``analytics.track`` with a ``userId``) has people in
    segments, with an activity log, who were "no person" on their own page."""
    the_id = any_id
    if any_id.startswith("prf_"):
        rows = await asyncio.to_thread(mp.storage.segments.person_segments, any_id)
        named = next((r.user_id or r.anonymous_id for r in rows
                      if (r.user_id or r.anonymous_id) and not r.ids[1:]), None)
        if named is None or profile_id_for(named) != any_id:
            return None
        the_id = named
    first = await mp.storage.index.person_events([the_id], limit=1)
    if not first:
        return None
    is_user = json.loads(first[0].body).get("userId") == the_id
    return {"id": profile_id_for(the_id), "user_id": the_id if is_user else None,
            "user_ids": [the_id] if is_user else [],
            "anonymous_ids": [] if is_user else [the_id], "traits": {}, "trait_times": {},
            "trait_sources": {}, "cleared_traits": {}, "groups": {}}
