"""Webhook: signed JSON POSTs, verified by an independent receiver (the fake)."""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx
import msgspec
import pytest

from millpond.destinations import Item, Reject, Sent, SettingsError, get_type
from millpond.destinations.webhook import Webhook

from .samples import EVENTS, IDENTIFY, TRACK, deliver, plan, send

SECRET = "whsec_test_0123456789abcdef"


def test_single_event_signed_with_message_id(vendor, http: httpx.Client) -> None:
    fake = vendor("webhook", secret=SECRET)
    dest = Webhook.from_settings(fake.destination_settings())
    assert all(o == Sent() for o in deliver(dest, EVENTS, http))
    assert fake.received == EVENTS  # the preset passes the stored event through
    request = fake.requests[0]
    expected = "sha256=" + hmac.new(SECRET.encode(), request.raw_body, hashlib.sha256).hexdigest()
    assert request.header("x-millpond-signature") == expected
    assert request.header("x-millpond-message-id") == IDENTIFY["messageId"]
    assert json.loads(request.body) == IDENTIFY


def test_resend_is_deduplicated_by_message_id(vendor, http: httpx.Client) -> None:
    fake = vendor("webhook", secret=SECRET)
    dest = Webhook.from_settings(fake.destination_settings())
    deliver(dest, [TRACK], http)
    deliver(dest, [TRACK], http)
    assert fake.received == [TRACK] and fake.duplicates == 1


def test_wrong_secret_is_rejected_by_the_receiver(vendor, http: httpx.Client) -> None:
    fake = vendor("webhook", secret=SECRET)
    dest = Webhook.from_settings({**fake.destination_settings(), "secret": "x" * 20})
    [outcome] = deliver(dest, [TRACK], http)
    assert isinstance(outcome, Reject) and "401" in outcome.reason
    assert fake.received == []


def test_batches_are_json_arrays(vendor, http: httpx.Client) -> None:
    fake = vendor("webhook", secret=SECRET, batch_size=5)
    dest = Webhook.from_settings(fake.destination_settings())
    assert dest.batching.max_events == 5 and Webhook.batching.max_events == 1
    batches = plan(dest, EVENTS)
    assert [len(items) for _, items in batches] == [5, 2]
    assert all(send(dest, dest.build_request(a, i), http) == Sent() for a, i in batches)
    assert fake.received == EVENTS
    bodies = [json.loads(r.body) for r in fake.requests]
    assert all(isinstance(b, list) for b in bodies)
    assert fake.requests[0].header("x-millpond-message-id") is None


def test_a_batch_size_one_destination_never_drops_extra_items() -> None:
    dest = Webhook.from_settings({"url": "https://example.com/hook"})
    request = dest.build_request("Send event", [Item({"a": 1}, {}), Item({"b": 2}, {})])
    assert json.loads(request.body) == [{"a": 1}, {"b": 2}] and request.item_count == 2


def test_packed_payloads_make_the_same_requests_as_objects() -> None:
    """The pump may hand a webhook msgspec.Raw payloads and a {seq, messageId} event."""
    assert Webhook.raw_payloads
    for settings in ({"url": "https://example.com/hook", "secret": SECRET},
                     {"url": "https://example.com/hook", "batch_size": 10}):
        dest = Webhook.from_settings(settings)
        for events in ([TRACK], EVENTS):
            plain = dest.build_request("Send event", [Item(e, e) for e in events])
            packed = [Item(msgspec.Raw(dest.encode_payload(e)),
                           {"seq": 1, "messageId": e["messageId"]}) for e in events]
            assert dest.build_request("Send event", packed) == plain


def test_encode_payload_reuses_the_encoding_validation_made() -> None:
    dest = Webhook.from_settings({"url": "https://example.com/hook"})
    payload, twin = dict(TRACK), dict(TRACK)
    assert dest.validate_item("Send event", payload) is None
    encoded = dest.encode_payload(payload)
    assert encoded is dest.encode_payload(payload)  # the very bytes validation made
    assert dest.encode_payload(twin) == encoded and dest.encode_payload(twin) is not encoded
    assert json.loads(dest.encode_payload({"other": 1})) == {"other": 1}


def test_custom_headers_are_sent(vendor, http: httpx.Client) -> None:
    fake = vendor("webhook")
    settings = {**fake.destination_settings(), "headers": {"Authorization": "Bearer abc123xyz"}}
    deliver(Webhook.from_settings(settings), [TRACK], http)
    assert fake.requests[0].header("authorization") == "Bearer abc123xyz"


@pytest.mark.parametrize(
    ("raw", "field", "needle"),
    [
        ({"url": "ftp://example.com/x"}, "url", "http or https URL"),
        ({"url": "https://e.com", "headers": {"Content-Type": "x"}}, "headers", "cannot be"),
        ({"url": "https://e.com", "headers": {"Bad Name": "x"}}, "headers", "header name"),
        ({"url": "https://e.com", "secret": "short"}, "secret", "at least 16"),
        ({"url": "https://e.com", "batch_size": 0}, "batch_size", ">= 1"),
    ],
)
def test_settings_validation(raw: dict, field: str, needle: str) -> None:
    with pytest.raises(SettingsError) as err:
        get_type("webhook").parse_settings(raw)
    assert err.value.field == field and needle in err.value.message


def test_masking_covers_credential_headers() -> None:
    masked = Webhook.mask_settings(
        {
            "url": "https://e.com",
            "secret": SECRET,
            "headers": {"Authorization": "Bearer abcdefghijkl", "X-Team": "growth"},
        }
    )
    assert masked["secret"] == "••••cdef"
    assert masked["headers"] == {"Authorization": "••••ijkl", "X-Team": "growth"}
