"""Property-based fuzzing of the collector over real HTTP: never a 5xx, errors always shaped.

Hypothesis builds request bodies (arbitrary JSON, Segment-like messages with wrong types
and odd timestamps, raw bytes, gzip or not) and headers (content type, content encoding,
authorization), and sends them to one running server.
"""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.errors import assert_error_shape
from tests.support.server import ADMIN_TOKEN

TYPES = ["identify", "track", "page", "screen", "group", "alias"]
ENDPOINTS = [*TYPES, "batch", "import"]

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2 ** 70), max_value=2 ** 70)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30))
json_values = st.recursive(
    scalars,
    lambda children: (st.lists(children, max_size=4)
                      | st.dictionaries(st.text(max_size=10), children, max_size=4)),
    max_leaves=20)


@st.composite
def iso_times(draw) -> str:
    """Times across the whole representable range, in the forms SDKs send (and some not)."""
    edges = [datetime(1, 1, 2, tzinfo=UTC), datetime(9999, 12, 30, tzinfo=UTC),
             datetime(1970, 1, 1, tzinfo=UTC)]
    moment = draw(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                               timezones=st.just(UTC)) | st.sampled_from(edges))
    offset = draw(st.sampled_from([None, 0, 5, -8, 14]))
    if offset:
        moment = moment.astimezone(timezone(timedelta(hours=offset)))
    text = moment.isoformat(timespec=draw(st.sampled_from(["seconds", "milliseconds",
                                                           "microseconds"])))
    return text.replace("+00:00", "Z") if draw(st.booleans()) else text


field_values = {
    "type": st.sampled_from([*TYPES, "purchase", ""]) | scalars,
    "messageId": st.uuids().map(str) | scalars,
    "userId": st.text(min_size=1, max_size=20) | scalars | json_values,
    "anonymousId": st.text(min_size=1, max_size=20) | scalars,
    "event": st.text(max_size=20) | scalars,
    "name": st.text(max_size=20) | scalars,
    "groupId": st.text(max_size=20) | scalars,
    "previousId": st.text(max_size=20) | scalars,
    "timestamp": st.one_of(iso_times(), iso_times(), scalars),
    "originalTimestamp": st.one_of(iso_times(), iso_times(), scalars),
    "sentAt": st.one_of(iso_times(), iso_times(), scalars),
    "properties": json_values,
    "traits": json_values,
    "context": st.fixed_dictionaries({}, optional={"traits": json_values,
                                                   "library": json_values}) | json_values,
    "integrations": json_values,
    "writeKey": scalars,
    "surprise": json_values,
}
REQUIRED = {"identify": {}, "track": {"event": "Clicked"}, "page": {"name": "Home"},
            "screen": {"name": "Main"}, "group": {"groupId": "g1"},
            "alias": {"previousId": "anon-1"}}


@st.composite
def segment_messages(draw) -> dict:
    """A valid message of some type, then a few fields added, replaced or removed."""
    kind = draw(st.sampled_from(TYPES))
    msg = {"type": kind, "userId": "u1", **REQUIRED[kind]}
    # Server SDKs send timestamp; browser and mobile ones originalTimestamp plus sentAt.
    skewed = ("originalTimestamp", "sentAt")
    for key in draw(st.sampled_from([(), ("timestamp",), skewed, skewed, ("originalTimestamp",),
                                     ("sentAt",), ("timestamp", *skewed)])):
        msg[key] = draw(iso_times())
    for key in ("messageId", "properties", "traits", "context", "anonymousId"):
        if draw(st.booleans()):
            msg[key] = draw(field_values[key])
    for key in draw(st.lists(st.sampled_from(sorted(field_values)), max_size=2, unique=True)):
        if draw(st.booleans()):
            msg[key] = draw(field_values[key])
        else:
            msg.pop(key, None)
    return msg


messages = segment_messages() | st.fixed_dictionaries({}, optional=field_values)


@st.composite
def bodies(draw) -> bytes:
    kind = draw(st.sampled_from(["message", "batch", "json", "bytes"]))
    if kind == "message":
        data = draw(messages)
    elif kind == "batch":
        data = {"batch": draw(st.lists(messages | json_values, max_size=5))}
        for key in ("context", "integrations", "sentAt", "writeKey", "extra"):
            if draw(st.booleans()):
                data[key] = draw(json_values | iso_times())
    elif kind == "json":
        data = draw(json_values)
    else:
        return draw(st.binary(max_size=200))
    return json.dumps(data).encode()


@pytest.fixture(scope="module")
def fuzz_target(shared_server):
    source = shared_server.create_source("fuzz")
    track = shared_server.create_source("fuzz-track", kind="track")
    return shared_server, source, track


def _printable(text: str) -> str:
    """What may travel in an HTTP header value: printable ASCII."""
    return "".join(ch for ch in text if 32 <= ord(ch) < 127).strip()


def _basic(user: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(endpoint=st.sampled_from(ENDPOINTS), body=bodies(),
       ctype=st.sampled_from(["application/json", "application/json; charset=utf-8",
                              "text/plain", None, "application/xml", "multipart/form-data"])
       | st.text(max_size=20),
       encoding=st.sampled_from([None, None, "gzip", "gzip-header-only", "deflate",
                                 "identity"]),
       auth=st.sampled_from(["good", "good", "good", "none", "bad", "bearer", "track",
                             "admin", "junk"]),
       junk=st.text(max_size=30))
def test_collector_never_fails_with_5xx(fuzz_target, endpoint, body, ctype, encoding, auth,
                                        junk):
    server, source, track = fuzz_target
    headers: dict[str, str] = {}
    if ctype is not None:
        headers["content-type"] = _printable(ctype) or "x"
    if encoding == "gzip":
        body = gzip.compress(body)
        headers["content-encoding"] = "gzip"
    elif encoding is not None:
        headers["content-encoding"] = "gzip" if encoding == "gzip-header-only" else encoding
    headers["authorization"] = {
        "good": _basic(source["write_key"]),
        "none": "",
        "bad": _basic(junk),
        "bearer": f"Bearer {source['write_key']}",
        "track": _basic(track["write_key"]),
        "admin": f"Bearer {ADMIN_TOKEN}",
        "junk": _printable(junk),
    }[auth]
    if not headers["authorization"]:
        del headers["authorization"]
    r = httpx.post(f"{server.url}/v1/{endpoint}", content=body, headers=headers, timeout=30)
    assert r.status_code < 500, (r.status_code, r.text, body[:300])
    _check_answer(r, endpoint)


def _check_answer(r: httpx.Response, endpoint: str) -> None:
    if r.status_code != 200:
        assert_error_shape(r)
        return
    answer = r.json()
    assert answer["success"] is True
    if endpoint in ("batch", "import"):
        for item in answer["rejected"]:
            assert isinstance(item["index"], int) and item["code"] and item["reason"]


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batch=st.lists(segment_messages(), min_size=1, max_size=5), single=st.booleans(),
       top=st.fixed_dictionaries({}, optional={"sentAt": field_values["sentAt"],
                                               "context": field_values["context"],
                                               "integrations": json_values}))
def test_message_values_never_cause_5xx(fuzz_target, batch, single, top):
    """Well-formed requests whose messages carry odd values: the per-message paths."""
    server, source, _track = fuzz_target
    if single:
        msg = batch[0]
        endpoint = msg["type"] if msg.get("type") in TYPES else "track"
        r = httpx.post(f"{server.url}/v1/{endpoint}", json=msg,
                       auth=(source["write_key"], ""), timeout=30)
    else:
        endpoint = "batch"
        r = httpx.post(f"{server.url}/v1/batch", json={"batch": batch, **top},
                       auth=(source["write_key"], ""), timeout=30)
    assert r.status_code < 500, (r.status_code, r.text)
    _check_answer(r, endpoint)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["customers/{id}", "customers/{id}/events", "events"]),
       method=st.sampled_from(["PUT", "POST", "GET", "DELETE"]),
       customer=st.text(min_size=0, max_size=40),
       data=json_values | st.fixed_dictionaries({}, optional={
           "name": scalars, "data": json_values, "timestamp": scalars | st.floats(),
           "id": scalars, "type": st.sampled_from(["event", "page", "screen", "x"]),
           "anonymous_id": scalars, "_timestamp": scalars}))
def test_track_api_never_fails_with_5xx(fuzz_target, path, method, customer, data):
    server, _source, track = fuzz_target

    url = f"{server.url}/api/v1/" + path.format(id=quote(customer, safe=""))
    body = json.dumps(data).encode()  # NaN and Infinity go out as the bare tokens
    r = httpx.request(method, url, content=body, headers={"content-type": "application/json"},
                      auth=(track["site_id"], track["write_key"]), timeout=30)
    assert r.status_code < 500, (r.status_code, r.text, url, body[:300])
    if r.status_code != 200:
        assert_error_shape(r)
