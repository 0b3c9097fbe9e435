"""The public shapes of destinations and dead letters (DESIGN.md), from stored records.

Stores keep settings exactly as given (secrets included) because the pump needs them;
every read path meant for people goes through here, which masks them with the type's own
rule.
"""

from __future__ import annotations

from millpond.connections.config import masked_settings
from millpond.storage.models import DeadLetter, Destination
from millpond.timeutil import format_ms


def _iso(seconds: float | None) -> str | None:
    return None if seconds is None else format_ms(int(seconds * 1000))


def destination_dict(dest: Destination) -> dict:
    """The public shape, with secrets masked by the type's rule."""
    return {
        "id": dest.id, "name": dest.name, "type": dest.type,
        "settings": masked_settings(dest.type, dest.settings),
        "rate_limit": dict(dest.rate_limit),
        "actions": [dict(a) for a in dest.actions],
        "enabled": dest.enabled,
        "connected_at": format_ms(int(dest.connected_at * 1000)),
        "connected_seq": dest.connected_seq,
    }


def dead_letter_dict(d: DeadLetter) -> dict:
    return {
        "id": d.id, "destination_id": d.destination_id, "seq": d.seq,
        "message_id": d.message_id, "action": d.action, "reason": d.reason,
        "status": d.status, "response": d.response, "payload": d.payload,
        "created_at": _iso(d.created_at), "state": str(d.state),
        "redriven_at": _iso(d.redriven_at),
    }
