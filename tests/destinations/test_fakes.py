"""The fakes themselves: knobs, lifecycle and contract details the destinations
do not exercise (other body formats, auth forms, v2 batch...)."""

from __future__ import annotations

import gzip
import json
import sys
import time
from urllib.parse import urlencode

import httpx
import pytest

from .fakes import FAKES, start_fake
from .fakes.segment import basic


def test_every_destination_type_has_a_documented_fake() -> None:
    from millpond.destinations import all_types

    # Warehouse and storage types need no fake: their tests use a real PostgreSQL and moto.
    assert set(FAKES) == {cls.name for cls in all_types() if cls.kind == "vendor"}
    for name, cls in FAKES.items():
        doc = sys.modules[cls.__module__].__doc__ or ""
        assert "https://" in doc, f"{name} fake does not name the docs it follows"
        assert name == "webhook" or "vendors.md §" in doc


def test_unknown_fake_name() -> None:
    with pytest.raises(KeyError, match="fakes: amplitude"):
        start_fake("nope")


def test_fail_next_then_recover(vendor, http: httpx.Client) -> None:
    fake = vendor("posthog")
    fake.fail_next(2, 503)
    url = fake.url + "/batch/"
    body = {"api_key": fake.api_key, "batch": [{"event": "e", "distinct_id": "d"}]}
    assert [http.post(url, json=body).status_code for _ in range(3)] == [503, 503, 200]
    assert len(fake.requests) == 3 and len(fake.received) == 1


def test_outage_on_and_off(vendor, http: httpx.Client) -> None:
    fake = vendor("customerio")
    auth = (fake.site_id, fake.api_key)
    fake.outage(status=502)
    assert http.get(fake.url + "/auth", auth=auth).status_code == 502
    fake.outage(False)
    assert http.get(fake.url + "/auth", auth=auth).status_code == 200


def test_delay_and_retry_after_header(vendor, http: httpx.Client) -> None:
    fake = vendor("amplitude")
    fake.delay_seconds = 0.2
    fake.fail_next(1, 429, retry_after=1.5)
    started = time.monotonic()
    response = http.post(fake.url + "/2/httpapi", json={})
    assert time.monotonic() - started >= 0.2
    assert response.status_code == 429 and response.headers["retry-after"] == "1.5"
    assert response.json()["error"] == "Too many requests for some devices and users"


def test_stop_drops_keep_alive_connections() -> None:
    fake = start_fake("webhook")
    url = fake.destination_settings()["url"]
    with httpx.Client(timeout=2) as client:
        assert client.post(url, json={"messageId": "a"}).status_code == 200
        fake.stop()
        with pytest.raises(httpx.TransportError):
            client.post(url, json={"messageId": "b"})
    fake.stop()  # idempotent
    assert [r["messageId"] for r in fake.received] == ["a"]


def test_reset_and_wait_for(vendor, http: httpx.Client) -> None:
    fake = vendor("webhook")
    http.post(fake.destination_settings()["url"], json={"messageId": "a"})
    assert fake.wait_for(1, timeout=1) == [{"messageId": "a"}]
    with pytest.raises(TimeoutError, match="1 of 2"):
        fake.wait_for(2, timeout=0.1)
    fake.reset()
    assert fake.received == [] and fake.requests == [] and fake.duplicates == 0


def test_context_manager() -> None:
    with FAKES["segment"]() as fake:
        assert httpx.get(fake.url + "/v1/batch").status_code == 404


# -- Mixpanel ---------------------------------------------------------------------------


def _mp_event(n: int) -> dict:
    return {
        "event": "e",
        "properties": {"time": 1714564800 + n, "distinct_id": "d-1", "$insert_id": f"id-{n}"},
    }


@pytest.mark.parametrize("form", ["json", "ndjson", "form", "gzip"])
def test_mixpanel_body_formats(vendor, http: httpx.Client, form: str) -> None:
    fake = vendor("mixpanel")
    events = [_mp_event(1), _mp_event(2)]
    headers = {"Content-Type": "application/json"}
    body = json.dumps(events).encode()
    if form == "ndjson":
        headers["Content-Type"] = "application/x-ndjson"
        body = b"\n".join(json.dumps(e).encode() for e in events)
    elif form == "form":
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        body = urlencode({"data": json.dumps(events), "verbose": 1}).encode()
    elif form == "gzip":
        headers["Content-Encoding"] = "gzip"
        body = gzip.compress(body)
    response = http.post(
        fake.url + "/import?strict=1", content=body, headers=headers, auth=(fake.api_secret, "")
    )
    assert response.json() == {"code": 200, "num_records_imported": 2, "status": "OK"}


def test_mixpanel_seconds_and_ms_are_the_same_event(vendor, http: httpx.Client) -> None:
    fake = vendor("mixpanel")
    seconds, millis = _mp_event(0), _mp_event(0)
    millis["properties"]["time"] = 1714564800000
    for event in (seconds, millis):
        http.post(fake.url + "/import", json=[event], auth=(fake.project_token, ""))
    assert len(fake.received) == 1 and fake.duplicates == 1


def test_mixpanel_import_needs_auth_and_track_is_recent_only(vendor, http) -> None:
    fake = vendor("mixpanel")
    assert http.post(fake.url + "/import", json=[_mp_event(1)]).status_code == 401
    old = _mp_event(1)
    old["properties"]["token"] = fake.project_token
    recent = {
        "event": "e",
        "properties": {
            "time": int(time.time()),
            "distinct_id": "d",
            "$insert_id": "r-1",
            "token": fake.project_token,
        },
    }
    assert http.post(fake.url + "/track", json=[old]).text == "0"
    assert http.post(fake.url + "/track?verbose=1", json=[recent]).json()["status"] == 1


def test_mixpanel_engage_operations(vendor, http: httpx.Client) -> None:
    fake = vendor("mixpanel")
    token = fake.project_token
    updates = [
        {"$token": token, "$distinct_id": "u", "$set": {"a": 1, "tags": ["x"]}},
        {"$token": token, "$distinct_id": "u", "$set_once": {"a": 2, "b": 2}},
        {"$token": token, "$distinct_id": "u", "$add": {"n": 3}},
        {"$token": token, "$distinct_id": "u", "$union": {"tags": ["x", "y"]}},
        {"$token": token, "$distinct_id": "u", "$unset": ["b"]},
    ]
    assert http.post(fake.url + "/engage", json=updates).text == "1"
    assert fake.profiles["u"] == {"a": 1, "tags": ["x", "y"], "n": 3}


# -- Segment, Amplitude, PostHog, Customer.io --------------------------------------------


def test_segment_auth_forms_drops_and_context_merge(vendor, http: httpx.Client) -> None:
    fake = vendor("segment")
    message = {"type": "track", "event": "e", "userId": "u", "context": {"ip": "1.1.1.1"}}
    batch = {
        "batch": [message, {"type": "track", "event": "no ids"}],
        "context": {"library": {"name": "x"}, "ip": "9.9.9.9"},
    }
    assert http.post(fake.url + "/v1/batch", json=batch).status_code == 401
    assert (
        http.post(
            fake.url + "/v1/batch", json=batch, headers={"Authorization": basic(fake.write_key)}
        ).status_code
        == 200
    )
    assert (
        http.post(
            fake.url + "/v1/track",
            json={**message, "writeKey": fake.write_key},
            headers={"Authorization": "Bearer oauth"},
        ).status_code
        == 200
    )
    [stored, single] = fake.received
    assert stored["context"] == {"library": {"name": "x"}, "ip": "1.1.1.1"}
    assert stored["messageId"].startswith("api-") and single["messageId"] != stored["messageId"]
    assert [reason for reason, _ in fake.dropped] == ["no_user_anon_id"]
    too_big = {"batch": [{**message, "properties": {"x": "y" * 40_000}}]}
    assert (
        http.post(
            fake.url + "/v1/batch", json=too_big, headers={"Authorization": basic(fake.write_key)}
        ).status_code
        == 400
    )


def test_amplitude_identify_api_and_request_errors(vendor, http: httpx.Client) -> None:
    fake = vendor("amplitude")
    form = {
        "api_key": fake.api_key,
        "identification": json.dumps(
            [{"user_id": "user-1", "user_properties": {"$set": {"plan": "pro"}}}]
        ),
    }
    assert http.post(fake.url + "/identify", data=form).status_code == 200
    assert fake.users["user-1"] == {"plan": "pro"}
    missing = http.post(fake.url + "/2/httpapi", json={"events": []}).json()
    assert missing == {
        "code": 400,
        "error": "Request missing required field",
        "missing_field": "api_key",
    }
    text = http.post(fake.url + "/2/httpapi", content=b"{}", headers={"Content-Type": "text/plain"})
    assert text.status_code == 400


def test_posthog_single_capture_and_key_rules(vendor, http: httpx.Client) -> None:
    fake = vendor("posthog")
    single = {"api_key": fake.api_key, "event": "e", "properties": {"distinct_id": 42}}
    assert http.post(fake.url + "/capture/", json=single).json() == {"status": 1}
    assert fake.received[0]["distinct_id"] == "42"
    mixed = {
        "batch": [
            {"event": "e", "distinct_id": "d", "api_key": fake.api_key},
            {"event": "e", "distinct_id": "d", "api_key": "phc_other"},
        ]
    }
    assert http.post(fake.url + "/batch/", json=mixed).status_code == 401
    blank = {"api_key": fake.api_key, "batch": [{"event": "e", "distinct_id": " "}]}
    assert http.post(fake.url + "/batch/", json=blank).status_code == 400
    bad_uuid = {
        "api_key": fake.api_key,
        "batch": [{"event": "e", "distinct_id": "d", "uuid": "nope"}],
    }
    assert http.post(fake.url + "/batch/", json=bad_uuid).status_code == 200
    assert fake.dropped[0][0] == "invalid uuid"


def test_customerio_v2_batch_partial(vendor, http: httpx.Client) -> None:
    fake = vendor("customerio")
    batch = {
        "batch": [
            {
                "type": "person",
                "identifiers": {"id": "p1"},
                "action": "identify",
                "attributes": {"plan": "pro"},
            },
            {"type": "person", "identifiers": {"id": "p1", "email": "x@y"}, "action": "identify"},
            {
                "type": "person",
                "identifiers": {"id": "p1"},
                "action": "event",
                "name": "Bought",
                "id": "01HXYZABCDEFGHJKMNPQRSTVWX",
                "timestamp": 1714564800,
            },
        ]
    }
    response = http.post(fake.url + "/api/v2/batch", json=batch, auth=(fake.site_id, fake.api_key))
    assert response.status_code == 207
    assert [e["batch_index"] for e in response.json()["errors"]] == [1]
    assert fake.people["p1"]["plan"] == "pro" and fake.received[0]["name"] == "Bought"


def test_customerio_update_only_does_not_create(vendor, http: httpx.Client) -> None:
    fake = vendor("customerio")
    response = http.put(
        fake.url + "/api/v1/customers/ghost",
        json={"_update": True, "a": 1},
        auth=(fake.site_id, fake.api_key),
    )
    assert response.status_code == 200 and response.json() == {} and fake.people == {}
