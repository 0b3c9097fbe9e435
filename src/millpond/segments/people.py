"""Who a person is and what they did: the inputs of the evaluator, read from storage.

A person is a merged profile (every id identify and alias joined) or, before any
identify, a single id seen on events. Their id here is the profile's public id, and for
an id with no profile the public id that id would have as a profile of its own (so a
lone anonymous visitor who later identifies with nothing earlier keeps it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

import msgspec

from millpond.profiles.merge import profile_id_for
from millpond.storage.contracts import Storage
from millpond.storage.models import StoredEvent, WindowCursor

from .evaluate import PersonFacts
from .scan import LogScan

PAGE = 2000
_decode = msgspec.json.Decoder().decode


class Person(msgspec.Struct, frozen=True):
    """``id`` (public profile id), every id of the person, and the ids the Audience
    events carry (``user_id``: the profile's chosen user id)."""

    id: str
    ids: tuple[str, ...]
    user_id: str | None
    anonymous_id: str | None
    profile: dict[str, Any] | None = None


def resolve(storage: Storage, any_id: str, is_user: bool = False) -> Person:
    """The person ``any_id`` (a user id, anonymous id or profile id) belongs to;
    ``is_user``: it was seen as a ``userId`` (for a person with no profile yet)."""
    return person_of(any_id, is_user, storage.profiles.get(any_id))


def resolve_many(storage: Storage, any_ids: Mapping[str, bool]) -> dict[str, Person]:
    """:func:`resolve` for each of ``any_ids`` (id -> seen as a user id) with one read of
    the profile store (``get_many``), not one per id: the follower and a build resolve
    thousands of ids at a time."""
    profiles = storage.profiles.get_many(list(any_ids))
    return {any_id: person_of(any_id, is_user, profiles.get(any_id))
            for any_id, is_user in any_ids.items()}


def person_of(any_id: str, is_user: bool, profile: dict[str, Any] | None) -> Person:
    """The person of ``any_id`` given its ``profile`` (None: no profile yet)."""
    if profile is None:
        if is_user:
            return Person(profile_id_for(any_id), (any_id,), any_id, None)
        return Person(profile_id_for(any_id), (any_id,), None, any_id)
    ids = tuple(sorted({*profile["user_ids"], *profile["anonymous_ids"]})) or (any_id,)
    anonymous = profile["anonymous_ids"][0] if profile["anonymous_ids"] else None
    return Person(profile["id"], ids, profile["user_id"], anonymous, profile)


async def facts(storage: Storage, person: Person) -> PersonFacts:
    """The person's traits and every one of their events (oldest to newest)."""
    events: list[tuple[int, int, Mapping[str, Any]]] = []
    before: WindowCursor | None = None
    while True:
        page = await storage.index.person_events(person.ids, before=before, limit=PAGE)
        events.extend((e.ts_ms, e.seq, _decode(e.body)) for e in page)
        if len(page) < PAGE:
            break
        before = WindowCursor(page[-1].ts_ms, page[-1].seq)
    return PersonFacts.from_profile(person.profile, events)


async def scan_people(storage: Storage, scan: LogScan, people: Iterable[Person],
                      ids_per_read: int = 500, page: int = 5000) -> None:
    """Feed ``scan`` every event of ``people``, reading the per-person index for several
    hundred ids at a time (one read per person would pay a thread hop per person); then
    ``scan.facts(person.ids, person.profile)`` gives each one's data."""
    ids = sorted({i for person in people for i in person.ids})
    async for rows in owned_pages(storage, ids, ids_per_read=ids_per_read, page=page):
        scan.feed(rows)


async def owned_pages(storage: Storage, ids: Sequence[str], *, ids_per_read: int = 500,
                      page: int = 5000) -> AsyncIterator[list[StoredEvent]]:
    """Every event the per-person index files under ``ids`` (each event's ``userId``,
    else its ``anonymousId``: exactly the events a scan keeps under those ids), a page at
    a time."""
    for start in range(0, len(ids), ids_per_read):
        part = list(ids[start:start + ids_per_read])
        before: WindowCursor | None = None
        while True:
            rows = await storage.index.person_events(part, before=before, limit=page)
            yield rows
            if len(rows) < page:
                break
            before = WindowCursor(rows[-1].ts_ms, rows[-1].seq)
