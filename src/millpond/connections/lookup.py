"""Finding a stored event by ``messageId`` or ``seq`` (event tester, ``message_id`` lookups)."""

from __future__ import annotations

import json

from millpond.storage.contracts import EventLog


async def find_event(log: EventLog, source_ids: list[str], message_id: str) -> dict | None:
    """The stored event (with ``seq``) whose source is one of ``source_ids``, or None."""
    for source_id in source_ids:
        found = await log.find(source_id, message_id)
        if found is not None:
            return json.loads(found.json())
    return None


async def event_at(log: EventLog, seq: int) -> dict | None:
    """The stored event (with ``seq``) under ``seq``, or None."""
    found = await log.get(seq)
    return None if found is None else json.loads(found.json())
