"""Segment: batches forwarded unchanged, messageId kept as the dedupe key."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from millpond.destinations import Reject, Retry, Sent
from millpond.destinations.segment import Segment, batch_url

from .samples import EVENTS, IDENTIFY, TRACK, actions_for, deliver


def test_batch_forwarded_with_message_ids(vendor, http: httpx.Client) -> None:
    fake = vendor("segment")
    dest = Segment.from_settings(fake.destination_settings())
    assert deliver(dest, EVENTS, http) == [Sent()]
    assert [r["messageId"] for r in fake.received] == [e["messageId"] for e in EVENTS]
    request = fake.requests[0]
    assert request.path == "/v1/batch"
    user = base64.b64decode(request.header("authorization").split()[1]).decode()
    assert user == fake.write_key + ":"
    body = json.loads(request.body)
    assert body["sentAt"].endswith("Z")
    for sent, event in zip(body["batch"], EVENTS, strict=True):
        assert {"seq", "source_id", "received_at"}.isdisjoint(sent)
        assert sent == {
            k: v for k, v in event.items() if k not in ("seq", "source_id", "received_at")
        }


def test_resend_is_deduplicated(vendor, http: httpx.Client) -> None:
    fake = vendor("segment")
    dest = Segment.from_settings(fake.destination_settings())
    deliver(dest, EVENTS, http)
    deliver(dest, EVENTS, http)
    assert len(fake.received) == len(EVENTS) and fake.duplicates == len(EVENTS)


def test_bad_write_key_is_terminal(vendor, http: httpx.Client) -> None:
    fake = vendor("segment")
    dest = Segment.from_settings({**fake.destination_settings(), "write_key": "wrong"})
    [outcome] = deliver(dest, [TRACK], http)
    assert isinstance(outcome, Reject) and "invalid write key" in outcome.reason


def test_rate_limit_answer_carries_retry_after(vendor, http: httpx.Client) -> None:
    fake = vendor("segment")
    dest = Segment.from_settings(fake.destination_settings())
    fake.fail_next(2, 429, retry_after=3)
    raw = http.post(fake.url + "/v1/batch", json={"batch": []})
    assert raw.headers["retry-after"] == raw.headers["x-ratelimit-reset"] == "3"
    [outcome] = deliver(dest, [TRACK], http)
    assert outcome == Retry("HTTP 429: injected failure 429", 3.0)
    assert deliver(dest, [TRACK], http) == [Sent()]


@pytest.mark.parametrize(
    ("status", "kind"), [(410, Retry), (460, Retry), (501, Reject), (505, Reject), (502, Retry)]
)
def test_analytics_python_retry_table(status: int, kind: type) -> None:
    dest = Segment.from_settings(Segment.settings_example)
    assert isinstance(dest.classify(status, {}, b'{"message": "x"}', 2), kind)


def test_retry_after_is_capped_at_300s() -> None:
    dest = Segment.from_settings(Segment.settings_example)
    assert dest.classify(429, {"Retry-After": "3000"}, b"", 1).retry_after == 300.0


def test_oversize_batch_400_asks_to_split() -> None:
    dest = Segment.from_settings(Segment.settings_example)
    outcome = dest.classify(400, {}, b'{"code": "too_large", "message": "batch > 500KB"}', 10)
    assert outcome == Reject("HTTP 400: batch > 500KB", split=True)


def test_validate_item_catches_what_segment_drops_silently() -> None:
    dest = Segment.from_settings(Segment.settings_example)
    [(action, payload)] = actions_for(dest, TRACK)
    assert dest.validate_item(action, payload) is None
    no_ids = {k: v for k, v in payload.items() if k not in ("userId", "anonymousId")}
    assert "no_user_anon_id" in dest.validate_item(action, no_ids)
    assert "event" in dest.validate_item(action, {**payload, "event": ""})
    big = {**payload, "properties": {"pad": "x" * 33_000}}
    assert "32 KB" in dest.validate_item(action, big)
    [(action, payload)] = actions_for(dest, IDENTIFY)
    assert dest.validate_item(action, payload) is None


def test_endpoint_forms() -> None:
    assert batch_url("https://api.segment.io") == "https://api.segment.io/v1/batch"
    assert batch_url("https://api.segment.io/v1/") == "https://api.segment.io/v1/batch"
    assert (
        batch_url("https://events.eu1.segmentapis.com")
        == "https://events.eu1.segmentapis.com/v1/batch"
    )
