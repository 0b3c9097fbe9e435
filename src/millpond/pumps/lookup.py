"""Finding a stored event by ``messageId`` (event tester, ``message_id`` lookups)."""

from __future__ import annotations

import json

from millpond.log.base import EventLog


def find_event(log: EventLog, source_ids: list[str], message_id: str) -> dict | None:
    """The stored event (with ``seq``) whose source is one of ``source_ids``, or None."""
    for source_id in source_ids:
        found = log.find_message(source_id, message_id)
        if found is not None:
            return json.loads(found)
    return None
