"""Malformed requests get a clear 4xx (or a per-message rejection) and change nothing else.

Every case runs against one real server. Before and after each request the whole log is
read through ``GET /api/events``: a refused request must leave it exactly as it was, and a
batch with some bad messages may only add its good ones. Inside a batch each bad message
is reported by index and reason in the 200 answer and in ``GET /api/rejections``.
"""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from dataclasses import dataclass, field

import httpx
import pytest

from tests.support.errors import assert_error_shape
from tests.support.server import ADMIN_TOKEN


def j(obj) -> bytes:
    return json.dumps(obj).encode()


def mid() -> str:
    return f"bad-input-{uuid.uuid4()}"


def track(**extra) -> dict:
    return {"userId": "u1", "event": "Clicked", "messageId": mid(), **extra}


def nested(depth: int) -> bytes:
    return b'{"userId":"u1","event":"Deep","properties":' + b'{"a":' * depth + b"1" \
        + b"}" * depth + b"}"


BIG = "x" * (33 * 1024)


@dataclass
class Case:
    id: str
    body: bytes
    status: int
    code: str
    message: str
    path: str = "/v1/track"
    headers: dict = field(default_factory=dict)
    auth: str = "good"  # good | none | bad | track | admin | admin_bearer | garbage
    method: str = "POST"


WHOLE_REQUEST_CASES = [
    Case("bad-json", b'{"userId": "u1", "event": ', 400, "bad_request", "not valid JSON"),
    Case("json-not-an-object", b'[{"userId": "u1"}]', 400, "bad_request",
         "must be a JSON object"),
    Case("properties-a-string", j(track(properties="cheap")), 400, "invalid_field",
         "properties must be an object"),
    Case("traits-an-array", j({"userId": "u1", "traits": [1, 2]}), 400, "invalid_field",
         "traits must be an object", path="/v1/identify"),
    Case("userId-an-object", j(track(userId={"id": 1})), 400, "invalid_field",
         "userId must be a string"),
    Case("event-a-number", j(track(event=42)), 400, "invalid_field", "event name"),
    Case("page-name-a-list", j({"userId": "u1", "name": ["Home"]}), 400, "invalid_field",
         "name must be a string", path="/v1/page"),
    Case("messageId-a-bool", j(track(messageId=True)), 400, "invalid_field",
         "messageId must be a string"),
    Case("messageId-too-long", j(track(messageId="m" * 201)), 400, "invalid_field",
         "messageId is longer"),
    Case("track-without-event", j({"userId": "u1", "messageId": mid()}), 400, "missing_field",
         "event name"),
    Case("identify-without-ids", j({"traits": {"a": 1}}), 400, "missing_identity",
         "userId or anonymousId is required", path="/v1/identify"),
    Case("screen-ids-null", j({"userId": None, "anonymousId": "", "name": "S"}), 400,
         "missing_identity", "userId or anonymousId", path="/v1/screen"),
    Case("group-without-groupId", j({"userId": "u1"}), 400, "missing_field", "groupId",
         path="/v1/group"),
    Case("alias-without-previousId", j({"userId": "u1"}), 400, "missing_field", "previousId",
         path="/v1/alias"),
    Case("alias-without-userId", j({"previousId": "anon"}), 400, "missing_field",
         "alias needs a userId", path="/v1/alias"),
    Case("unknown-field", j(track(colour="red")), 400, "unknown_field", "'colour'"),
    Case("oversized-message", j(track(properties={"blob": BIG})), 413, "message_too_large",
         "limit is 32 KB"),
    Case("oversized-request", j({"batch": [track(properties={"blob": "y" * 30000})
                                           for _ in range(145)]}),
         413, "too_large", "4 MiB", path="/v1/batch"),
    Case("missing-write-key", j(track()), 401, "unauthorized", "missing write key",
         auth="none"),
    Case("bad-write-key", j(track()), 401, "unauthorized", "invalid write key", auth="bad"),
    Case("bad-write-key-in-body", j(track(writeKey="not-a-key")), 401, "unauthorized",
         "invalid write key", auth="none"),
    Case("track-source-write-key", j(track()), 403, "forbidden", "track source",
         auth="track"),
    Case("admin-token-as-write-key", j(track()), 401, "unauthorized", "invalid write key",
         auth="admin"),
    Case("admin-token-as-bearer", j(track()), 401, "unauthorized", "invalid write key",
         auth="admin_bearer"),
    Case("garbage-basic-auth", j(track()), 401, "unauthorized", "not valid Basic",
         auth="garbage"),
    Case("bad-gzip", b"\x1f\x8b\x08\x00not really gzip", 400, "bad_request",
         "not valid gzip", headers={"content-encoding": "gzip"}),
    Case("truncated-gzip", gzip.compress(j(track()))[:-12], 400, "bad_request", "truncated",
         headers={"content-encoding": "gzip"}),
    Case("unsupported-content-encoding", j(track()), 400, "bad_request",
         "unsupported Content-Encoding", headers={"content-encoding": "br"}),
    Case("gzip-bomb", gzip.compress(b" " * (5 * 1024 * 1024)), 413, "too_large",
         "decompressed body is larger", path="/v1/batch",
         headers={"content-encoding": "gzip"}),
    Case("non-utf8", b'{"userId": "u1", "event": "caf\xe9"}', 400, "bad_request", "UTF-8"),
    Case("deeply-nested", nested(20000), 400, "bad_request", "nested too deeply"),
    Case("integer-above-2^63", b'{"userId": "u1", "event": "E", "properties": '
                               b'{"n": 9223372036854775808}}',
         400, "number_out_of_range", "outside the 64-bit range"),
    Case("integer-far-above-2^64", b'{"userId": "u1", "event": "E", "properties": '
                                   b'{"n": 123456789012345678901234567890}}',
         400, "number_out_of_range", "outside the 64-bit range"),
    Case("float-1e400", b'{"userId": "u1", "event": "E", "properties": {"n": 1e400}}',
         400, "bad_request", "out of range"),
    Case("NaN-literal", b'{"userId": "u1", "event": "E", "properties": {"n": NaN}}',
         400, "bad_request", "not valid JSON"),
    Case("wrong-content-type", j(track()), 415, "unsupported_media_type", "Content-Type",
         headers={"content-type": "application/x-www-form-urlencoded"}),
    Case("empty-body", b"", 400, "bad_request", "empty"),
    Case("whitespace-body", b"  \n ", 400, "bad_request", "empty"),
    Case("batch-not-an-array", j({"batch": {"0": track()}}), 400, "bad_request",
         "batch must be an array", path="/v1/batch"),
    Case("batch-missing", j({"sentAt": "2024-01-01T00:00:00Z"}), 400, "bad_request",
         "batch must be an array", path="/v1/batch"),
    Case("empty-batch", j({"batch": []}), 400, "bad_request", "batch is empty",
         path="/v1/batch"),
    Case("batch-unknown-top-level-field", j({"batch": [track(type="track")], "bogus": 1}),
         400, "bad_request", "unknown top-level field 'bogus'", path="/v1/batch"),
    Case("batch-context-not-an-object", j({"batch": [track(type="track")], "context": 5}),
         400, "bad_request", "context must be an object", path="/v1/batch"),
    Case("invalid-timestamp", j(track(timestamp="yesterday at noon")), 400,
         "invalid_timestamp", "not an ISO 8601 time"),
    Case("timestamp-a-number", j(track(timestamp=1614834367)), 400, "invalid_timestamp",
         "must be an ISO 8601 string"),
    Case("timestamp-out-of-range", j(track(timestamp="0000-01-01T00:00:00Z")), 400,
         "invalid_timestamp", "timestamp"),
    # Clock-skew correction (receivedAt - (sentAt - originalTimestamp)) that leaves the
    # range of representable times used to crash the request with a 500.
    Case("skew-correction-out-of-range",
         j(track(originalTimestamp="0001-01-02T00:00:00Z", sentAt="9999-12-30T00:00:00Z")),
         400, "invalid_timestamp", "out of range"),
    Case("skew-correction-out-of-range-future",
         j(track(originalTimestamp="9999-12-30T00:00:00Z", sentAt="0001-01-02T00:00:00Z")),
         400, "invalid_timestamp", "out of range"),
    Case("unknown-endpoint", j(track()), 404, "not_found", "no collector endpoint",
         path="/v1/purchase"),
    Case("GET-on-collector", b"", 405, "method_not_allowed", "POST", method="GET"),
]


@dataclass
class BatchCase:
    id: str
    good: list[dict]
    bad: dict[int, tuple[object, str, str]]  # index -> (message, code, reason substring)


def typed(kind: str, **fields) -> dict:
    return {"type": kind, "messageId": mid(), **fields}


BATCH_CASES = [
    BatchCase("unknown-type", [typed("track", userId="u1", event="A")],
              {1: ({"type": "purchase", "userId": "u1"}, "unknown_type", "unknown type")}),
    BatchCase("missing-type", [typed("track", userId="u1", event="A")],
              {0: ({"userId": "u1", "event": "A"}, "missing_field", "type is required")}),
    BatchCase("not-an-object", [typed("page", userId="u1", name="Home")],
              {0: ("just a string", "not_an_object", "must be a JSON object"),
               2: (None, "not_an_object", "must be a JSON object")}),
    BatchCase("oversized-message-in-batch", [typed("track", userId="u1", event="A"),
                                             typed("screen", anonymousId="a1", name="S")],
              {1: (typed("track", userId="u1", event="Big", properties={"blob": BIG}),
                   "message_too_large", "limit is 32 KB")}),
    BatchCase("every-message-fault",
              [typed("identify", userId="u1", traits={"plan": "pro"}),
               typed("alias", userId="u1", previousId="anon-1")],
              {0: (typed("track", userId="u1", event="E", properties="s"), "invalid_field",
                   "properties must be an object"),
               2: (typed("track", userId={"x": 1}, event="E"), "invalid_field",
                   "userId must be a string"),
               3: (typed("track", userId="u1"), "missing_field", "event name"),
               4: (typed("identify", traits={"a": 1}), "missing_identity",
                   "userId or anonymousId is required"),
               5: (typed("group", userId="u1"), "missing_field", "groupId"),
               6: (typed("alias", userId="u1"), "missing_field", "previousId"),
               7: (typed("track", userId="u1", event="E", flavour="x"), "unknown_field",
                   "'flavour'"),
               8: (typed("track", userId="u1", event="E", timestamp="not a time"),
                   "invalid_timestamp", "timestamp"),
               9: (typed("track", userId="u1", event="E", sentAt="garbage"),
                   "invalid_timestamp", "sentAt"),
               10: (typed("track", userId="u1", event="E", properties={"n": 2 ** 64}),
                    "number_out_of_range", "64-bit"),
               11: (typed("group", userId="u1", groupId="g", messageId=["m"]),
                    "invalid_field", "messageId")}),
]


@pytest.fixture(scope="module")
def ctx(shared_server):
    source = shared_server.create_source("bad-input")
    track_source = shared_server.create_source("bad-input-track", kind="track")
    return shared_server, source, track_source


def _auth_header(case_auth: str, source: dict, track_source: dict) -> dict:
    def basic(user: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:".encode()).decode()

    return {
        "good": {"authorization": basic(source["write_key"])},
        "none": {},
        "bad": {"authorization": basic("definitely-not-a-write-key")},
        "track": {"authorization": basic(track_source["write_key"])},
        "admin": {"authorization": basic(ADMIN_TOKEN)},
        "admin_bearer": {"authorization": f"Bearer {ADMIN_TOKEN}"},
        "garbage": {"authorization": "Basic !!!not-base64!!!"},
    }[case_auth]


def _last_rejection_id(server, source: dict) -> int:
    with server.admin as c:
        rows = c.get("/api/rejections", params={"source": source["id"], "limit": 1000}).json()
    return max((r["id"] for r in rows["rejections"]), default=0)


def _rejections_after(server, source: dict, after: int) -> list[dict]:
    with server.admin as c:
        r = c.get("/api/rejections", params={"source": source["id"], "cursor": str(after),
                                             "limit": 1000})
    r.raise_for_status()
    return r.json()["rejections"]


@pytest.mark.parametrize("case", WHOLE_REQUEST_CASES, ids=lambda c: c.id)
def test_malformed_request_is_refused_and_changes_nothing(ctx, case: Case):
    server, source, track_source = ctx
    before = server.events()
    headers = {"content-type": "application/json",
               **_auth_header(case.auth, source, track_source), **case.headers}
    r = httpx.request(case.method, server.url + case.path, content=case.body,
                      headers=headers, timeout=30)
    assert r.status_code < 500, r.text
    assert r.status_code == case.status, r.text
    error = assert_error_shape(r)
    assert error["code"] == case.code, r.text
    assert case.message in error["message"], r.text
    assert server.events() == before


def test_collector_answers_carry_top_level_code_for_sdks(ctx):
    """The RudderStack and Customer.io SDKs read ``code``/``message`` at the top level."""
    server, _source, _ = ctx
    r = httpx.post(server.url + "/v1/batch", json={"batch": [track(type="track")]},
                   auth=("nope", ""))
    assert r.status_code == 401
    body = r.json()
    assert (body["code"], body["message"]) == (body["error"]["code"], body["error"]["message"])


@pytest.mark.parametrize("case", BATCH_CASES, ids=lambda c: c.id)
def test_bad_messages_in_a_batch_are_reported_by_index(ctx, case: BatchCase):
    server, source, _ = ctx
    size = len(case.good) + len(case.bad)
    good = iter(case.good)
    batch = [case.bad[i][0] if i in case.bad else next(good) for i in range(size)]
    before = server.events()
    rejections_before = _last_rejection_id(server, source)

    r = httpx.post(server.url + "/v1/batch", json={"batch": batch},
                   auth=(source["write_key"], ""), timeout=30)

    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["accepted"] == len(case.good)
    assert answer["duplicates"] == 0
    got = [(x["index"], x["code"]) for x in answer["rejected"]]
    assert got == [(i, code) for i, (_, code, _) in sorted(case.bad.items())]
    for item in answer["rejected"]:
        assert case.bad[item["index"]][2] in item["reason"], item

    after = server.events()
    assert after[:len(before)] == before
    added = after[len(before):]
    assert [(e["messageId"], e["type"]) for e in added] == [
        (m["messageId"], m["type"]) for m in case.good]
    assert all(e["source_id"] == source["id"] for e in added)

    stored = _rejections_after(server, source, rejections_before)
    assert [(x["index"], x["code"], x["reason"]) for x in stored] == [
        (x["index"], x["code"], x["reason"]) for x in answer["rejected"]]
    for x in stored:  # the refused message itself is kept for the owner to inspect
        original = case.bad[x["index"]][0]
        if isinstance(original, dict) and x["code"] != "message_too_large":
            kept = json.loads(x["body"])
            assert (kept.get("type"), kept.get("messageId")) == (
                original.get("type"), original.get("messageId")), x


def test_strict_mode_refuses_the_whole_batch(ctx):
    server, source, _ = ctx
    before = server.events()
    rejections_before = _last_rejection_id(server, source)
    batch = [typed("track", userId="u1", event="Fine"), typed("track", userId="u1"),
             typed("page", userId="u1", name="Fine too")]
    r = httpx.post(server.url + "/v1/batch", json={"batch": batch},
                   auth=(source["write_key"], ""), headers={"X-Strict-Mode": "1"})
    assert r.status_code == 400, r.text
    error = assert_error_shape(r)
    assert error["code"] == "invalid_messages"
    assert "#1" in error["message"] and "strict mode" in error["message"]
    assert [(x["index"], x["code"]) for x in r.json()["rejected"]] == [(1, "missing_field")]
    assert server.events() == before
    assert _rejections_after(server, source, rejections_before) == []

    # The same header on a clean batch stores everything.
    del batch[1]
    r = httpx.post(server.url + "/v1/batch", json={"batch": batch},
                   auth=(source["write_key"], ""), headers={"X-Strict-Mode": "1"})
    assert r.status_code == 200, r.text
    assert [e["messageId"] for e in server.events()[len(before):]] == [
        m["messageId"] for m in batch]


def test_oversized_chunked_request_without_content_length(ctx):
    """The 4 MiB limit holds while streaming, not only when Content-Length announces it."""
    server, source, _ = ctx
    before = server.events()
    payload = j({"batch": [track(type="track", properties={"blob": "z" * 30000})
                           for _ in range(145)]})

    def chunks():
        for i in range(0, len(payload), 65536):
            yield payload[i:i + 65536]

    r = httpx.post(server.url + "/v1/batch", content=chunks(),
                   headers={"content-type": "application/json"},
                   auth=(source["write_key"], ""), timeout=30)
    assert r.status_code == 413, r.text
    assert "4 MiB" in assert_error_shape(r)["message"]
    assert server.events() == before
