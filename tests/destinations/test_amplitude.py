"""Amplitude: insert_id dedupe, ms times, $identify, per-index 400s, 429 pauses."""

from __future__ import annotations

import json

import httpx
import pytest

from millpond.destinations import Item, Partial, Retry, Sent
from millpond.destinations.amplitude import Amplitude

from .samples import (
    ANONYMOUS_TRACK,
    EVENTS,
    IDENTIFY,
    PAGE,
    TRACK,
    actions_for,
    deliver,
    plan,
    send,
    track_event,
)


def _dest(fake, **overrides) -> Amplitude:
    return Amplitude.from_settings({**fake.destination_settings(), **overrides})


def test_events_carry_insert_id_and_ms_time(vendor, http: httpx.Client) -> None:
    fake = vendor("amplitude")
    assert all(o == Sent() for o in deliver(_dest(fake), EVENTS, http))
    by_type = {e["event_type"]: e for e in fake.received}
    order = by_type["Order Completed"]
    assert order["insert_id"] == TRACK["messageId"]
    assert order["time"] == 1714564860123
    assert order["user_id"] == "user-12345" and order["device_id"] == "anon-67890"
    assert order["event_properties"] == TRACK["properties"]
    assert order["ip"] == "203.0.113.7" and order["os_name"] == "iOS"
    assert "user_id" not in by_type["Loaded a Page"]  # anonymous page: no null user_id
    assert by_type["Loaded a Page"]["event_properties"]["name"] == "Pricing"
    assert by_type["Product Viewed"]["device_id"] == ANONYMOUS_TRACK["anonymousId"]
    request = fake.requests[0]
    assert request.path == "/2/httpapi" and json.loads(request.body)["api_key"] == fake.api_key


def test_identify_is_an_identify_event(vendor, http: httpx.Client) -> None:
    fake = vendor("amplitude")
    deliver(_dest(fake), [IDENTIFY], http)
    [event] = fake.received
    assert event["event_type"] == "$identify" and event["insert_id"] == IDENTIFY["messageId"]
    assert event["user_properties"] == {"$set": IDENTIFY["traits"]}
    assert fake.users["user-12345"]["plan"] == "pro"


def test_resend_is_deduplicated_by_insert_id(vendor, http: httpx.Client) -> None:
    fake = vendor("amplitude")
    deliver(_dest(fake), EVENTS, http)
    stored = len(fake.received)
    deliver(_dest(fake), EVENTS, http)
    assert len(fake.received) == stored and fake.duplicates == stored


def test_invalid_fields_partial_then_resend_rest(vendor, http: httpx.Client) -> None:
    fake = vendor("amplitude")
    dest = _dest(fake)
    [(action, items)] = plan(dest, [track_event(n) for n in range(4)])
    items[2] = Item({**items[2].payload, "event_type": "[Amplitude] Reserved"}, items[2].event)
    outcome = send(dest, dest.build_request(action, items), http)
    assert isinstance(outcome, Partial) and outcome.sent_indexes == frozenset()
    assert list(outcome.rejected) == [2] and "event_type" in outcome.rejected[2]
    assert outcome.pending(4) == [0, 1, 3] and fake.received == []
    rest = [items[i] for i in outcome.pending(4)]
    assert send(dest, dest.build_request(action, rest), http) == Sent()
    assert len(fake.received) == 3


def test_missing_fields_map_is_parsed() -> None:
    dest = Amplitude.from_settings(Amplitude.settings_example)
    body = {
        "code": 400,
        "error": "Request missing required field",
        "events_with_missing_fields": {"event_type": [1]},
        "events_missing_required_fields": {"user_id": [0]},
    }
    outcome = dest.classify(400, {}, json.dumps(body).encode(), 3)
    assert isinstance(outcome, Partial) and set(outcome.rejected) == {0, 1}
    assert outcome.pending(3) == [2]
    whole = dest.classify(400, {}, b'{"code":400,"error":"Invalid API key"}', 3)
    assert not isinstance(whole, Partial) and "Invalid API key" in whole.reason


@pytest.mark.parametrize(("api", "pause"), [("httpapi", 30.0), ("batch", 15.0)])
def test_throttled_ids_retry_after_documented_pause(
    vendor, http: httpx.Client, api: str, pause: float
) -> None:
    fake = vendor("amplitude")
    fake.throttle_ids.add("user-12345")
    dest = _dest(fake, api=api)
    [outcome] = deliver(dest, [TRACK], http)
    assert isinstance(outcome, Retry) and outcome.retry_after == pause
    assert "Too many requests" in outcome.reason
    assert fake.requests[0].path == ("/2/httpapi" if api == "httpapi" else "/batch")
    fake.throttle_ids.clear()
    assert deliver(dest, [TRACK], http) == [Sent()]


def test_batch_api_widens_byte_limit() -> None:
    dest = Amplitude.from_settings({"api_key": "k" * 10, "api": "batch", "region": "eu"})
    assert dest.batching.max_bytes == 19_000_000 and Amplitude.batching.max_bytes == 900_000
    assert dest.url == "https://api.eu.amplitude.com/batch"


def test_short_ids_need_min_id_length(vendor, http: httpx.Client) -> None:
    fake = vendor("amplitude")
    event = {**TRACK, "userId": "42", "anonymousId": None}
    dest = _dest(fake)
    [(action, payload)] = actions_for(dest, event)
    assert "min_id_length" in dest.validate_item(action, payload)
    relaxed = _dest(fake, min_id_length=1)
    assert relaxed.validate_item(action, payload) is None
    assert deliver(relaxed, [event], http) == [Sent()]
    assert json.loads(fake.requests[0].body)["options"] == {"min_id_length": 1}
    assert fake.received[0]["user_id"] == "42"


def test_validate_item_rules() -> None:
    dest = Amplitude.from_settings(Amplitude.settings_example)
    [(action, payload)] = actions_for(dest, PAGE)
    assert dest.validate_item(action, payload) is None
    assert "placeholder" in dest.validate_item(action, {**payload, "device_id": "undefined"})
    assert "user_id` or `device_id" in dest.validate_item(
        action, {k: v for k, v in payload.items() if k != "device_id"}
    )
    assert "time" in dest.validate_item(action, {**payload, "time": "yesterday"})
