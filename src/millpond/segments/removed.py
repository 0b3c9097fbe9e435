"""Events retention removed, taken out of what was derived from them.

Retention tells the engine whose events it removed (``Expiry.owners``: each event's
``userId``, else its ``anonymousId``). A scan keeps each event's data under that owner
only (:class:`~.scan.LogScan`), so forgetting the owners' data and feeding it what is
left of their events (read through the per-person index) makes it the scan of the log
without the removed events; the owners are then evaluated again
(:meth:`~.engine.SegmentEngine.events_removed`).

Why in parts, with most reads done before taking the engine's lock: at a steady
retention every step removes thousands of events of thousands of people, and reading
and evaluating 10,000 owners of a million-event log held the lock for 1.7 s (measured),
with no live update in any segment meanwhile. A part of about :data:`PART` owners reads
their events without the lock, up to the seq the running state stood at; under the
lock, only what the follower took in since is read (from the log: a few ticks' worth).
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from millpond.storage.contracts import EventLog, Storage
from millpond.storage.models import StoredEvent

from .people import owned_pages, resolve_many
from .scan import READ_CHUNK, Head

#: Owners per part (:func:`parts_of`).
PART = 1000

_head = msgspec.json.Decoder(Head).decode


def parts_of(storage: Storage, owners: Mapping[str, bool]) -> list[dict[str, bool]]:
    """``owners`` in parts of about :data:`PART`, the owners that are one person in the
    same part: a person is evaluated once with all their removed events gone, never
    with some (``at_least 3, at_most 10`` could enter and exit between two parts).
    Reads the profile store: on a worker thread."""
    people = resolve_many(storage, owners)
    by_person: dict[str, dict[str, bool]] = {}
    for any_id, is_user in owners.items():
        by_person.setdefault(people[any_id].id, {})[any_id] = is_user
    parts: list[dict[str, bool]] = []
    part: dict[str, bool] = {}
    for mine in by_person.values():
        part.update(mine)
        if len(part) >= PART:
            parts.append(part)
            part = {}
    return [*parts, part] if part else parts


async def owned_events(storage: Storage, owners: Mapping[str, bool],
                       upto: int) -> list[StoredEvent]:
    """The events of ``owners`` still in the log, up to seq ``upto``."""
    return [row async for rows in owned_pages(storage, sorted(owners))
            for row in rows if row.seq <= upto]


async def owned_between(log: EventLog, owners: Mapping[str, bool], after: int,
                        upto: int) -> list[StoredEvent]:
    """The events of ``owners`` after seq ``after`` up to ``upto``, read from the log."""
    found: list[StoredEvent] = []
    cursor = after
    while cursor < upto:
        rows = await log.read(cursor, READ_CHUNK, upto_seq=upto)
        if not rows:
            break
        for row in rows:
            head = _head(row.body)
            user, anon = head.userId, head.anonymousId
            owner = user if isinstance(user, str) and user else anon
            if isinstance(owner, str) and owner in owners:
                found.append(row)
        cursor = rows[-1].seq
    return found
