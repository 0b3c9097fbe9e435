"""Builders for stored events as the log hands them to the profile store."""

from __future__ import annotations

import itertools
from typing import Any

_seq = itertools.count(1)


def event(kind: str, message_id: str, **fields: Any) -> dict[str, Any]:
    """A stored Segment event: ``fields`` override the defaults (``None`` values are dropped)."""
    base: dict[str, Any] = {
        "type": kind,
        "messageId": message_id,
        "timestamp": "2024-05-01T12:00:00.000Z",
        "seq": next(_seq),
        "source_id": "src_test",
        "received_at": "2024-05-01T12:00:01.000Z",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def identify(
    message_id: str,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    traits: dict[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    return event(
        "identify",
        message_id,
        userId=user_id,
        anonymousId=anonymous_id,
        traits=traits if traits is not None else {},
        **fields,
    )


def alias(message_id: str, previous_id: str, user_id: str, **fields: Any) -> dict[str, Any]:
    return event("alias", message_id, previousId=previous_id, userId=user_id, **fields)


def group(
    message_id: str,
    group_id: str,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    traits: dict[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    return event(
        "group",
        message_id,
        groupId=group_id,
        userId=user_id,
        anonymousId=anonymous_id,
        traits=traits if traits is not None else {},
        **fields,
    )
