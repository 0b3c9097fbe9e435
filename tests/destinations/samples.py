"""Sample stored events (one per Segment message type) and delivery helpers.

`deliver` runs events through a destination the way the pump does — preset
actions (trigger + mapping), `validate_item`, `group_key`, batches of at most
`batching.max_events`, `build_request`, a real HTTP send, `classify` — so
tests exercise the destination against its fake end to end.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from typing import Any

import httpx

from millpond.actions import compile_action
from millpond.destinations.base import DestinationType, Item, OutboundRequest, Outcome

CONTEXT = {
    "ip": "203.0.113.7",
    "locale": "en-GB",
    "page": {"url": "https://shop.example.com/pricing", "referrer": "https://example.org/"},
    "os": {"name": "iOS", "version": "17.4"},
    "app": {"version": "3.2.1"},
    "device": {"model": "iPhone15,2"},
    "traits": {"email": "ada@example.com"},
}

IDENTIFY = {
    "type": "identify",
    "messageId": "4a1b6c1e-0d7f-4c3e-9a43-5d2a1f2e3b01",
    "userId": "user-12345",
    "anonymousId": "anon-67890",
    "timestamp": "2024-05-01T12:00:00.000Z",
    "traits": {
        "email": "ada@example.com",
        "name": "Ada Lovelace",
        "plan": "pro",
        "createdAt": "2023-01-02T03:04:05Z",
        "address": {"city": "London"},
    },
    "context": CONTEXT,
    "seq": 1,
    "source_id": "src_1",
    "received_at": "2024-05-01T12:00:00.500Z",
}
TRACK = {
    "type": "track",
    # Not a valid Mixpanel $insert_id (underscores, > 36 chars): exercises the hash form.
    "messageId": "ajs-next-1714564800123-4c3e_9a43_5d2a1f2e3b02",
    "userId": "user-12345",
    "anonymousId": "anon-67890",
    "event": "Order Completed",
    "timestamp": "2024-05-01T12:01:00.123Z",
    "properties": {"revenue": 42.5, "currency": "EUR", "products": [{"sku": "A-1"}]},
    "context": CONTEXT,
    "seq": 2,
    "source_id": "src_1",
    "received_at": "2024-05-01T12:01:00.500Z",
}
PAGE = {
    "type": "page",
    "messageId": "4a1b6c1e-0d7f-4c3e-9a43-5d2a1f2e3b03",
    "anonymousId": "anon-67890",
    "name": "Pricing",
    "timestamp": "2024-05-01T12:02:00Z",
    "properties": {"url": "https://shop.example.com/pricing", "title": "Pricing"},
    "context": CONTEXT,
    "seq": 3,
}
SCREEN = {
    "type": "screen",
    "messageId": "4a1b6c1e-0d7f-4c3e-9a43-5d2a1f2e3b04",
    "userId": "user-12345",
    "name": "Home",
    "timestamp": "2024-05-01T12:03:00Z",
    "properties": {"tab": "featured"},
    "context": CONTEXT,
    "seq": 4,
}
GROUP = {
    "type": "group",
    "messageId": "4a1b6c1e-0d7f-4c3e-9a43-5d2a1f2e3b05",
    "userId": "user-12345",
    "groupId": "org-42",
    "timestamp": "2024-05-01T12:04:00Z",
    "traits": {"name": "Analytical Engines Ltd"},
    "seq": 5,
}
ALIAS = {
    "type": "alias",
    "messageId": "4a1b6c1e-0d7f-4c3e-9a43-5d2a1f2e3b06",
    "userId": "user-12345",
    "previousId": "anon-67890",
    "timestamp": "2024-05-01T12:05:00Z",
    "seq": 6,
}
ANONYMOUS_TRACK = {
    "type": "track",
    "messageId": "4a1b6c1e-0d7f-4c3e-9a43-5d2a1f2e3b07",
    "anonymousId": "anon-67890",
    "event": "Product Viewed",
    "timestamp": "2024-05-01T12:06:00Z",
    "properties": {"sku": "A-1"},
    "seq": 7,
}
EVENTS = [IDENTIFY, TRACK, PAGE, SCREEN, GROUP, ALIAS, ANONYMOUS_TRACK]


def track_event(n: int, pad: int = 0, **extra: Any) -> dict:
    """A distinct track event (messageId depends on n) with `pad` bytes of filler."""
    event = copy.deepcopy(ANONYMOUS_TRACK)
    event["messageId"] = f"{n:08d}-0d7f-4c3e-9a43-5d2a1f2e3b07"
    event["seq"] = 1000 + n
    event["properties"] = {"sku": f"S-{n}", "pad": "x" * pad} if pad else {"sku": f"S-{n}"}
    event.update(extra)
    return event


def actions_for(dest: DestinationType, event: dict) -> list[tuple[str, dict]]:
    """(action name, mapped payload) for every preset whose trigger matches."""
    out = []
    for spec in dest.presets:
        action = compile_action(spec)
        if action.trigger.matches(event):
            out.append((spec.name, action.mapping.apply(event)))
    return out


def send(dest: DestinationType, request: OutboundRequest, client: httpx.Client) -> Outcome:
    """Send one built request and classify the answer, as the pump does."""
    try:
        response = client.request(
            request.method, request.url, headers=request.headers, content=request.body
        )
    except httpx.TransportError as exc:
        return dest.transport_error(exc)
    return dest.answer(
        response.status_code, response.headers, response.content, request.item_count
    )


def plan(dest: DestinationType, events: list[dict]) -> list[tuple[str, list[Item]]]:
    """Map, validate and batch `events` into (action, items) requests.
    Raises AssertionError if validate_item refuses a preset payload."""
    groups: dict[str, list[tuple[str, Item]]] = defaultdict(list)
    for event in events:
        for name, payload in actions_for(dest, event):
            reason = dest.validate_item(name, payload)
            assert reason is None, f"{dest.name}/{name} refused {event['type']}: {reason}"
            groups[dest.group_key(name, payload)].append((name, Item(payload, event)))
    batches = []
    size = dest.batching.max_events
    for entries in groups.values():
        for start in range(0, len(entries), size):
            chunk = entries[start : start + size]
            batches.append((chunk[0][0], [item for _, item in chunk]))
    return batches


def deliver(dest: DestinationType, events: list[dict], client: httpx.Client) -> list[Outcome]:
    """Plan and send; returns one outcome per request."""
    return [send(dest, dest.build_request(a, items), client) for a, items in plan(dest, events)]
