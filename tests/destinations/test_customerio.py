"""Customer.io: people upserts with _timestamp, events with a stable ULID id."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from millpond.destinations import Item, Reject, Sent
from millpond.destinations.customerio import CustomerIo, event_id

from .samples import ANONYMOUS_TRACK, EVENTS, IDENTIFY, PAGE, SCREEN, TRACK, actions_for, deliver

ULID = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$")


def _dest(fake, **overrides) -> CustomerIo:
    return CustomerIo.from_settings({**fake.destination_settings(), **overrides})


def test_identify_upserts_person(vendor, http: httpx.Client) -> None:
    fake = vendor("customerio")
    assert deliver(_dest(fake), [IDENTIFY], http) == [Sent()]
    person = fake.people["user-12345"]
    assert person["email"] == "ada@example.com" and person["anonymous_id"] == "anon-67890"
    assert person["created_at"] == 1672628645  # 2023-01-02T03:04:05Z in unix seconds
    assert person["address"] == '{"city":"London"}'  # flat: objects as JSON text
    [(customer, attributes)] = fake.identifies
    assert attributes["_timestamp"] == 1714564800
    request = fake.requests[0]
    assert (request.method, request.path) == ("PUT", "/api/v1/customers/user-12345")


def test_events_person_and_anonymous(vendor, http: httpx.Client) -> None:
    fake = vendor("customerio")
    assert all(o == Sent() for o in deliver(_dest(fake), EVENTS, http))
    by_name = {r["name"]: r for r in fake.received}
    order = by_name["Order Completed"]
    assert order["customer_id"] == "user-12345" and order["type"] == "event"
    assert order["timestamp"] == 1714564860 and order["data"] == TRACK["properties"]
    assert order["id"] == event_id(TRACK["messageId"], TRACK["timestamp"])
    assert ULID.match(order["id"])
    viewed = by_name["Product Viewed"]
    assert viewed["anonymous_id"] == ANONYMOUS_TRACK["anonymousId"] and "customer_id" not in viewed
    page = by_name[PAGE["properties"]["url"]]
    assert page["type"] == "page" and page["anonymous_id"] == PAGE["anonymousId"]
    assert by_name["Home"]["type"] == "screen" and by_name["Home"]["customer_id"] == "user-12345"
    paths = {(r.method, r.path) for r in fake.requests}
    assert ("POST", "/api/v1/events") in paths
    assert ("POST", "/api/v1/customers/user-12345/events") in paths
    assert SCREEN["name"] in by_name


def test_resend_is_deduplicated_by_event_id(vendor, http: httpx.Client) -> None:
    fake = vendor("customerio")
    events = [TRACK, PAGE, SCREEN, ANONYMOUS_TRACK]
    deliver(_dest(fake), events, http)
    deliver(_dest(fake), events, http)
    assert len(fake.received) == 4 and fake.duplicates == 4


def test_out_of_order_identifies_keep_the_newest(vendor, http: httpx.Client) -> None:
    fake = vendor("customerio")
    newer = {
        **IDENTIFY,
        "messageId": "m-new",
        "timestamp": "2024-06-01T00:00:00Z",
        "traits": {"plan": "enterprise"},
    }
    older = {
        **IDENTIFY,
        "messageId": "m-old",
        "timestamp": "2024-05-01T00:00:00Z",
        "traits": {"plan": "free", "email": "old@example.com"},
    }
    deliver(_dest(fake), [newer, older], http)
    person = fake.people["user-12345"]
    assert person["plan"] == "enterprise" and person["email"] == "old@example.com"


def test_identifier_is_url_encoded(vendor, http: httpx.Client) -> None:
    fake = vendor("customerio")
    event = {**IDENTIFY, "userId": "ada/lovelace@example.com"}
    assert deliver(_dest(fake), [event], http) == [Sent()]
    assert "ada/lovelace@example.com" in fake.people
    assert "%2F" in fake.requests[0].path or "%2f" in fake.requests[0].path


def test_limits_checked_before_sending_and_by_the_fake(vendor, http: httpx.Client) -> None:
    fake = vendor("customerio")
    dest = _dest(fake)
    event = {**IDENTIFY, "userId": "u" * 151}
    [(action, payload)] = actions_for(dest, event)
    assert "150" in dest.validate_item(action, payload)
    outcome = deliver_unchecked(dest, action, payload, event, http)
    assert isinstance(outcome, Reject) and "identifier must be" in outcome.reason
    [(action, payload)] = actions_for(dest, {**TRACK, "event": "e" * 101})
    assert "≤100" in dest.validate_item(action, payload)
    too_many = {"identifier": "u-1", "attributes": {f"a{i}": i for i in range(301)}}
    assert "300" in dest.validate_item("Identify person", too_many)
    assert "anonymous_id" in dest.validate_item("Track event", {"name": "x"})


def deliver_unchecked(dest, action, payload, event, http) -> object:
    from .samples import send

    return send(dest, dest.build_request(action, [Item(payload, event)]), http)


def test_bad_credentials_and_error_shapes(vendor, http: httpx.Client) -> None:
    fake = vendor("customerio")
    [outcome] = deliver(_dest(fake, api_key="wrong"), [TRACK], http)
    assert outcome == Reject("HTTP 401: Unauthorized request")
    dest = _dest(fake)
    errors = json.dumps({"meta": {"errors": ["a is bad", "b is bad"]}}).encode()
    assert dest.classify(400, {}, errors, 1) == Reject("HTTP 400: a is bad; b is bad")


@pytest.mark.parametrize("message_id", ["01HXYZABCDEFGHJKMNPQRSTVWX", "01hxyzabcdefghjkmnpqrstvwx"])
def test_ulid_message_ids_are_kept(message_id: str) -> None:
    assert event_id(message_id, "2024-05-01T12:00:00Z") == message_id.upper()


def test_derived_ulid_is_stable_and_time_ordered() -> None:
    first = event_id("msg-a", "2024-05-01T12:00:00Z")
    assert first == event_id("msg-a", "2024-05-01T12:00:00Z") and ULID.match(first)
    assert first != event_id("msg-b", "2024-05-01T12:00:00Z")
    assert event_id("msg-z", "2024-05-01T12:00:00Z")[:10] == first[:10]  # same ms prefix
    assert event_id("msg-a", "2024-05-02T12:00:00Z") > first
