"""PostHog: deterministic uuids, $pageview/$screen/$identify, whole-request 400s."""

from __future__ import annotations

import json
import uuid

import httpx

from millpond.destinations import Reject, Sent
from millpond.destinations.posthog import MILLPOND_NAMESPACE, PostHog, event_uuid

from .samples import EVENTS, IDENTIFY, PAGE, SCREEN, TRACK, actions_for, deliver, plan


def _dest(fake, **overrides) -> PostHog:
    return PostHog.from_settings({**fake.destination_settings(), **overrides})


def test_uuid_is_uuid5_of_message_id(vendor, http: httpx.Client) -> None:
    fake = vendor("posthog")
    assert all(o == Sent() for o in deliver(_dest(fake), EVENTS, http))
    for record in fake.received:
        source = next(e for e in EVENTS if event_uuid(e["messageId"]) == record["uuid"])
        assert record["uuid"] == str(uuid.uuid5(MILLPOND_NAMESPACE, source["messageId"]))
        assert uuid.UUID(record["uuid"]).version == 5
    assert str(MILLPOND_NAMESPACE) == "6d696c6c-706f-4e64-8000-706f7374686f"  # never changes


def test_event_names_and_properties(vendor, http: httpx.Client) -> None:
    fake = vendor("posthog")
    deliver(_dest(fake), EVENTS, http)
    by_name = {r["event"]: r for r in fake.received}
    assert set(by_name) == {
        "Order Completed",
        "Product Viewed",
        "$pageview",
        "$screen",
        "$identify",
    }
    assert by_name["$pageview"]["properties"]["$current_url"] == PAGE["properties"]["url"]
    assert by_name["$pageview"]["distinct_id"] == PAGE["anonymousId"]
    assert by_name["$screen"]["properties"]["$screen_name"] == SCREEN["name"]
    assert by_name["Order Completed"]["timestamp"] == TRACK["timestamp"]
    assert by_name["Order Completed"]["properties"]["$ip"] == "203.0.113.7"
    identify = by_name["$identify"]
    assert identify["properties"]["$set"] == IDENTIFY["traits"]
    assert identify["properties"]["$anon_distinct_id"] == IDENTIFY["anonymousId"]
    assert fake.persons["user-12345"]["email"] == "ada@example.com"
    body = json.loads(fake.requests[0].body)
    assert body["api_key"] == fake.api_key and body["historical_migration"] is False
    assert fake.requests[0].path == "/batch/"


def test_resend_keeps_the_same_uuids(vendor, http: httpx.Client) -> None:
    fake = vendor("posthog")
    deliver(_dest(fake), EVENTS, http)
    deliver(_dest(fake), EVENTS, http)
    assert len(fake.all_events) == 2 * len(fake.received)  # PostHog may keep both copies
    assert fake.duplicates == len(fake.received)  # ...but they collapse by uuid


def test_historical_migration_setting(vendor, http: httpx.Client) -> None:
    fake = vendor("posthog")
    deliver(_dest(fake, historical_migration=True), [TRACK], http)
    assert fake.migrations == [True]


def test_distinct_id_falls_back_to_the_event(vendor, http: httpx.Client) -> None:
    fake = vendor("posthog")
    dest = _dest(fake)
    [(action, items)] = plan(dest, [TRACK])
    payload = {k: v for k, v in items[0].payload.items() if k not in ("distinct_id", "uuid")}
    request = dest.build_request(action, [items[0].__class__(payload, TRACK)])
    [record] = json.loads(request.body)["batch"]
    assert record["distinct_id"] == "user-12345" and record["uuid"] == event_uuid(
        TRACK["messageId"]
    )


def test_bad_key_is_terminal(vendor, http: httpx.Client) -> None:
    fake = vendor("posthog")
    [outcome] = deliver(_dest(fake, api_key="phc_wrong"), [TRACK], http)
    assert isinstance(outcome, Reject) and "401" in outcome.reason


def test_validate_item_blocks_whole_request_failures() -> None:
    dest = PostHog.from_settings(PostHog.settings_example)
    [(action, payload)] = actions_for(dest, TRACK)
    assert dest.validate_item(action, payload) is None
    assert "blank" in dest.validate_item(action, {**payload, "distinct_id": "  "})
    assert "event" in dest.validate_item(action, {**payload, "event": None})
    big = {**payload, "properties": {"pad": "x" * 1_000_000}}
    assert "900 KiB" in dest.validate_item(action, big)
