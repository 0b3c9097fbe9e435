"""Events and waiting, shared by the storage tests."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from millpond.storage.models import NewEvent


def ev(message_id: str, source: str = "src_a", ts: int = 1_000, kind: str = "track",
       received: int | None = None, **body) -> NewEvent:
    """A NewEvent whose body holds its type, messageId, source and ``body``'s fields."""
    payload = {"type": kind, "messageId": message_id, "source_id": source, **body}
    return NewEvent(source, kind, message_id, body.get("event"), body.get("userId"),
                    body.get("anonymousId"), ts,
                    int(time.time() * 1000) if received is None else received,
                    json.dumps(payload).encode())


def wait_until(predicate: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)
