"""A scripted destination type and transport for pump tests without a network."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import ClassVar

import msgspec

from millpond.actions import ActionSpec, FieldSpec, compile_action
from millpond.delivery.transport import Response
from millpond.destinations.base import (
    BatchLimits,
    DestinationType,
    Item,
    OutboundRequest,
    Outcome,
    Partial,
    RateLimit,
    classify_status,
)


class ScriptSettings(msgspec.Struct, forbid_unknown_fields=True):
    url: str = "http://vendor.invalid/in"


class ScriptType(DestinationType):
    """JSON array of payloads; ``{"partial": {...}}`` answers become Partial outcomes."""

    name = "script"
    title = "Script"
    docs = ""
    settings_type = ScriptSettings
    settings_example: ClassVar[dict] = {}
    default_rate_limit = RateLimit(100_000.0)
    batching = BatchLimits(max_events=3, max_bytes=100_000, linger_seconds=0.0)

    def __init__(self, batching: BatchLimits | None = None) -> None:
        super().__init__(ScriptSettings())
        if batching is not None:
            self.batching = batching

    def build_request(self, action: str, items: list[Item]) -> OutboundRequest:
        body = msgspec.json.encode([i.payload for i in items])
        return OutboundRequest("POST", self.settings.url, {}, body, len(items))

    def validate_item(self, action: str, payload: dict) -> str | None:
        return "too big" if payload.get("too_big") else None

    def group_key(self, action: str, payload: dict) -> str:
        return payload.get("group", action)

    def classify(self, status: int, headers: Mapping[str, str], body: bytes,
                 item_count: int) -> Outcome:
        if status == 207:
            data = msgspec.json.decode(body)
            return Partial(frozenset(data["sent"]), {int(k): v for k, v in
                                                     data["rejected"].items()})
        return classify_status(status, headers, body, item_count)


class ScriptedTransport:
    """Answers from a script (then 200); records what was sent."""

    def __init__(self, *answers: Response | Exception) -> None:
        self.answers = deque(answers)
        self.sent: list[list] = []

    async def send(self, request: OutboundRequest) -> Response:
        self.sent.append(msgspec.json.decode(request.body))
        if self.answers:
            answer = self.answers.popleft()
            if isinstance(answer, Exception):
                raise answer
            return answer
        return Response(200, {}, b"ok")

    async def aclose(self) -> None:
        pass


def action(name: str = "all", trigger: str = "type != null",
           mapping: dict | None = None, max_event_age: str | None = None,
           required: tuple[str, ...] = ()):
    return compile_action(ActionSpec(
        name, trigger, mapping if mapping is not None else {"id": {"@path": "$.messageId"},
                                                           "user": {"@path": "$.userId"}},
        max_event_age, tuple(FieldSpec(f, required=True) for f in required)))


def new_event(i: int, *, type: str = "track", user: str | None = None, source: str = "src",
              timestamp: str = "2030-01-01T00:00:00.000Z", **extra):
    """A NewEvent ready to append (body without seq)."""
    from millpond.storage.models import NewEvent

    body = {"type": type, "messageId": f"m{i}", "userId": user or f"u{i % 7}",
            "timestamp": timestamp, "receivedAt": "2030-01-01T00:00:00.000Z",
            "source_id": source, **extra}
    if type == "track":
        body.setdefault("event", "Clicked")
    return NewEvent(source, type, body["messageId"], body.get("event"), body["userId"], None,
                    0, 0, msgspec.json.encode(body))
