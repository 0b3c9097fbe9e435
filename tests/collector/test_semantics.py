"""What the collector does to good input: ids, dedupe, times, batch defaults, Track API,
reading the log back, and metrics. All against one real server."""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import httpx
import pytest


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class Sender:
    """A pipelines source on the shared server, with short ways to send and read."""

    def __init__(self, server, name: str | None = None):
        self.server = server
        self.source = server.create_source(name or f"sem-{uuid.uuid4().hex[:8]}")
        self.auth = (self.source["write_key"], "")

    def post(self, path: str, body: dict, **kw) -> httpx.Response:
        return httpx.post(self.server.url + path, json=body, auth=self.auth, timeout=30, **kw)

    def ok(self, path: str, body: dict) -> dict:
        r = self.post(path, body)
        assert r.status_code == 200, r.text
        return r.json()

    def events(self, **params) -> list[dict]:
        return self.server.events(source=self.source["id"], **params)


@pytest.fixture
def sender(shared_server) -> Sender:
    return Sender(shared_server)


# -- messageId and dedupe ------------------------------------------------------------
def test_message_id_is_generated_when_absent(sender):
    sender.ok("/v1/track", {"userId": "u1", "event": "NoId"})
    sender.ok("/v1/track", {"userId": "u1", "event": "NoId"})
    sender.ok("/v1/batch", {"batch": [{"type": "page", "userId": "u1", "name": "P",
                                       "messageId": ""}]})
    ids = [e["messageId"] for e in sender.events()]
    assert len(ids) == 3 and len(set(ids)) == 3
    for mid in ids:
        uuid.UUID(mid)


def test_retry_with_same_message_id_is_stored_once(sender, shared_server):
    body = {"userId": "u1", "event": "Retried", "messageId": "retry-1"}
    for _ in range(3):
        assert sender.ok("/v1/track", body) == {"success": True}
    answer = sender.ok("/v1/batch", {"batch": [{**body, "type": "track"},
                                               {**body, "type": "track", "messageId": "r-2"},
                                               {**body, "type": "track", "messageId": "r-2"}]})
    assert (answer["accepted"], answer["duplicates"]) == (1, 2)
    assert [e["messageId"] for e in sender.events()] == ["retry-1", "r-2"]
    # The same messageId from another source is another event.
    other = Sender(shared_server)
    other.ok("/v1/track", body)
    assert [e["messageId"] for e in other.events()] == ["retry-1"]
    assert len([e for e in shared_server.events() if e["messageId"] == "retry-1"]) == 2


def test_numeric_ids_are_stored_as_text(sender):
    sender.ok("/v1/track", {"userId": 12345, "event": "N", "messageId": 987})
    [event] = sender.events()
    assert (event["userId"], event["messageId"]) == ("12345", "987")
    assert sender.events(user_id="12345") == [event]


# -- times ---------------------------------------------------------------------------
def test_received_at_is_stamped_by_the_server(sender):
    before = datetime.now(UTC) - timedelta(milliseconds=5)
    sender.ok("/v1/track", {"userId": "u1", "event": "R", "receivedAt": "2000-01-01T00:00:00Z"})
    after = datetime.now(UTC) + timedelta(milliseconds=5)
    [event] = sender.events()
    assert event["receivedAt"] == event["received_at"]
    assert before <= parse(event["receivedAt"]) <= after
    # No timestamp, originalTimestamp or sentAt: the event happened when it arrived.
    assert event["timestamp"] == event["receivedAt"]


def test_given_timestamp_is_kept_as_sent(sender):
    sent = "2021-03-04T05:06:07.123+02:00"
    sender.ok("/v1/track", {"userId": "u1", "event": "Old", "timestamp": sent,
                            "sentAt": iso(datetime.now(UTC)),
                            "originalTimestamp": "2020-01-01T00:00:00Z"})
    [event] = sender.events()
    assert event["timestamp"] == sent
    # ...and it is the event time the log is queried by.
    assert sender.events(**{"from": "2021-03-04T03:06:07.123Z",
                            "to": "2021-03-04T03:06:07.124Z"}) == [event]


def test_clock_skew_is_corrected_when_no_timestamp(sender):
    device_now = datetime.now(UTC) - timedelta(hours=3)  # the device clock is 3 h behind
    sender.ok("/v1/track", {"userId": "u1", "event": "Skewed", "messageId": "skew-1",
                            "originalTimestamp": iso(device_now - timedelta(seconds=5)),
                            "sentAt": iso(device_now)})
    # The batch's sentAt applies to messages without their own (analytics.js style).
    sender.ok("/v1/batch", {"sentAt": iso(device_now),
                            "batch": [{"type": "track", "userId": "u1", "event": "Skewed",
                                       "messageId": "skew-2",
                                       "originalTimestamp": iso(device_now
                                                                - timedelta(seconds=90))}]})
    sender.ok("/v1/track", {"userId": "u1", "event": "NoSentAt", "messageId": "skew-3",
                            "originalTimestamp": "2022-02-02T02:02:02.000Z"})
    events = {e["messageId"]: e for e in sender.events()}
    for mid, delay in (("skew-1", 5), ("skew-2", 90)):
        event = events[mid]
        # receivedAt - (sentAt - originalTimestamp), to the millisecond.
        assert parse(event["timestamp"]) == parse(event["receivedAt"]) - timedelta(
            seconds=delay), event
        assert abs(parse(event["timestamp"]) - (datetime.now(UTC) - timedelta(seconds=delay))
                   ) < timedelta(seconds=30)
    assert events["skew-2"]["sentAt"] == iso(device_now)
    assert parse(events["skew-3"]["timestamp"]) == parse("2022-02-02T02:02:02Z")


# -- batches -------------------------------------------------------------------------
def test_batch_context_and_integrations_apply_to_each_message(sender):
    sender.ok("/v1/batch", {
        "context": {"app": {"name": "shop"}, "ip": "10.0.0.1"},
        "integrations": {"All": False, "Mixpanel": True},
        "batch": [
            {"type": "track", "userId": "u1", "event": "A", "messageId": "ctx-1"},
            {"type": "track", "userId": "u1", "event": "B", "messageId": "ctx-2",
             "context": {"ip": "10.9.9.9"}, "integrations": {"Mixpanel": False}},
        ]})
    events = {e["messageId"]: e for e in sender.events()}
    assert events["ctx-1"]["context"] == {"app": {"name": "shop"}, "ip": "10.0.0.1"}
    assert events["ctx-1"]["integrations"] == {"All": False, "Mixpanel": True}
    # A message's own values win over the batch defaults.
    assert events["ctx-2"]["context"] == {"app": {"name": "shop"}, "ip": "10.9.9.9"}
    assert events["ctx-2"]["integrations"] == {"All": False, "Mixpanel": False}


def test_identify_traits_from_context_are_normalised(sender):
    sender.ok("/v1/batch", {"batch": [
        {"type": "identify", "userId": "u1", "messageId": "ctx-traits",
         "context": {"traits": {"email": "a@example.com", "plan": "free"}}},
        {"type": "identify", "userId": "u1", "messageId": "both-traits",
         "traits": {"plan": "pro"}, "context": {"traits": {"email": "b@example.com",
                                                          "plan": "free"}}},
        {"type": "track", "userId": "u1", "event": "E", "messageId": "track-ctx",
         "context": {"traits": {"email": "c@example.com"}}},
    ]})
    events = {e["messageId"]: e for e in sender.events()}
    assert events["ctx-traits"]["traits"] == {"email": "a@example.com", "plan": "free"}
    assert events["both-traits"]["traits"] == {"email": "b@example.com", "plan": "pro"}
    assert "traits" not in events["track-ctx"]  # only identify carries traits


def test_partial_batch_keeps_the_good_messages(sender):
    answer = sender.ok("/v1/batch", {"batch": [
        {"type": "track", "userId": "u1", "event": "Good", "messageId": "good-1"},
        {"type": "track", "userId": "u1", "messageId": "bad-1"},
        {"type": "group", "userId": "u1", "groupId": "g", "messageId": "good-2"},
    ]})
    assert answer["accepted"] == 2
    assert [(x["index"], x["code"], x["field"]) for x in answer["rejected"]] == [
        (1, "missing_field", "event")]
    assert [e["messageId"] for e in sender.events()] == ["good-1", "good-2"]


def test_import_endpoint_works_like_batch(sender):
    answer = sender.ok("/v1/import", {
        "context": {"source": "backfill"},
        "batch": [{"type": "identify", "userId": "u1", "traits": {"n": 1},
                   "timestamp": "2019-05-01T00:00:00Z", "messageId": "imp-1"},
                  {"type": "track", "userId": "u1", "event": "Old",
                   "timestamp": "2019-05-02T00:00:00Z", "messageId": "imp-2"},
                  {"type": "nonsense", "messageId": "imp-3"}]})
    assert answer["accepted"] == 2 and [x["index"] for x in answer["rejected"]] == [2]
    events = sender.events()
    assert [(e["messageId"], e["timestamp"], e["context"]["source"]) for e in events] == [
        ("imp-1", "2019-05-01T00:00:00Z", "backfill"), ("imp-2", "2019-05-02T00:00:00Z",
                                                        "backfill")]


def test_every_call_type_on_its_own_endpoint(sender):
    calls = {
        "identify": {"userId": "u1", "traits": {"a": 1}},
        "track": {"userId": "u1", "event": "E", "properties": {"p": 1}},
        "page": {"anonymousId": "a1", "name": "Home", "properties": {"url": "/"}},
        "screen": {"userId": "u1", "name": "Main"},
        "group": {"userId": "u1", "groupId": "g1", "traits": {"size": 3}},
        "alias": {"userId": "u1", "previousId": "a1"},
    }
    for kind, body in calls.items():
        # The endpoint decides the type, whatever the body says.
        sender.ok(f"/v1/{kind}", {**body, "type": "track" if kind != "track" else "page"})
    events = sender.events()
    assert [e["type"] for e in events] == list(calls)
    for event, (kind, body) in zip(events, calls.items(), strict=True):
        for key, value in body.items():
            assert event[key] == value, (kind, key)


# -- Track API -----------------------------------------------------------------------
@pytest.fixture
def track_source(shared_server) -> dict:
    return shared_server.create_source(f"track-{uuid.uuid4().hex[:8]}", kind="track")


def track_api(server, source, method: str, path: str, body: dict | None = None):
    return httpx.request(method, f"{server.url}/api/v1/{path}", json=body,
                         auth=(source["site_id"], source["write_key"]), timeout=30)


def test_track_api_identify_with_timestamp(shared_server, track_source):
    r = track_api(shared_server, track_source, "PUT", "customers/cust-1",
                  {"email": "c@example.com", "_timestamp": 1614834367})
    assert r.status_code == 200, r.text
    [event] = shared_server.events(source=track_source["id"])
    assert (event["type"], event["userId"]) == ("identify", "cust-1")
    assert event["traits"]["email"] == "c@example.com"
    assert parse(event["timestamp"]) == datetime(2021, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert event["context"]["millpond"]["origin"] == "track_api"


def test_track_api_events_dedupe_by_id_and_page_type(shared_server, track_source):
    body = {"name": "Purchased", "data": {"price": 9}, "id": "evt-1", "timestamp": 1700000000}
    for _ in range(2):
        r = track_api(shared_server, track_source, "POST", "customers/cust-2/events", body)
        assert r.status_code == 200, r.text
    r = track_api(shared_server, track_source, "POST", "customers/cust-2/events",
                  {"name": "/pricing", "type": "page", "data": {"ref": "ad"}})
    assert r.status_code == 200, r.text
    events = shared_server.events(source=track_source["id"])
    assert [(e["type"], e["messageId"] == "evt-1") for e in events] == [
        ("track", True), ("page", False)]
    track, page = events
    assert (track["event"], track["userId"], track["properties"]) == (
        "Purchased", "cust-2", {"price": 9})
    assert parse(track["timestamp"]) == datetime.fromtimestamp(1700000000, UTC)
    assert (page["name"], page["properties"]) == ("/pricing", {"ref": "ad"})


def test_track_api_anonymous_event(shared_server, track_source):
    r = track_api(shared_server, track_source, "POST", "events",
                  {"name": "Visited", "anonymous_id": "anon-7", "data": {"x": 1}})
    assert r.status_code == 200, r.text
    [event] = shared_server.events(source=track_source["id"])
    assert (event["type"], event["anonymousId"], event.get("userId")) == (
        "track", "anon-7", None)
    r = track_api(shared_server, track_source, "POST", "events", {"name": "NoAnon"})
    assert r.status_code == 400 and r.json()["error"]["field"] == "anonymous_id"


@pytest.mark.parametrize("customer_id", ["a%41", "x/y", "ünï cödé", "50% off"])
def test_track_api_customer_ids_are_decoded_once(shared_server, track_source, customer_id):
    """Ids arrive percent-encoded in the path; ``%41`` must not turn into ``A``."""
    r = track_api(shared_server, track_source, "PUT",
                  f"customers/{quote(customer_id, safe='')}", {"n": 1})
    assert r.status_code == 200, r.text
    [event] = shared_server.events(source=track_source["id"])
    assert event["userId"] == customer_id


def test_track_api_refuses_wrong_credentials(shared_server, track_source):
    pipelines = shared_server.create_source(f"pipes-{uuid.uuid4().hex[:8]}")
    for auth in ((track_source["site_id"], "nope"), ("nope", track_source["write_key"]),
                 (pipelines["write_key"], ""), (pipelines["write_key"],
                                                pipelines["write_key"])):
        r = httpx.put(f"{shared_server.url}/api/v1/customers/c1", json={"a": 1}, auth=auth)
        assert r.status_code == 401, r.text
    assert shared_server.events(source=track_source["id"]) == []


# -- reading the log -----------------------------------------------------------------
def test_events_query_filters(shared_server):
    a, b = Sender(shared_server), Sender(shared_server)
    a.ok("/v1/batch", {"batch": [
        {"type": "track", "userId": "fu1", "event": "Ordered", "timestamp":
            "2021-01-01T00:00:00Z", "messageId": "f1"},
        {"type": "page", "userId": "fu2", "name": "Ordered", "timestamp":
            "2021-06-01T00:00:00Z", "messageId": "f2"},
        {"type": "track", "userId": "fu2", "event": "Paid", "timestamp":
            "2022-01-01T00:00:00Z", "messageId": "f3"}]})
    time.sleep(0.02)
    split = time.time()
    time.sleep(0.02)
    b.ok("/v1/track", {"userId": "fu1", "event": "Ordered", "messageId": "f4",
                       "timestamp": "2021-06-01T00:00:00Z"})

    def ids(**params) -> list[str]:
        return [e["messageId"] for e in shared_server.events(**params)
                if e["source_id"] in (a.source["id"], b.source["id"])]

    assert ids(source=a.source["id"]) == ["f1", "f2", "f3"]
    assert ids(source=b.source["name"]) == ["f4"]  # by name too
    assert [e["messageId"] for e in shared_server.events(
        source=[a.source["id"], b.source["id"]])] == ["f1", "f2", "f3", "f4"]
    assert ids(type="track") == ["f1", "f3", "f4"]
    assert ids(type=["page", "track"]) == ["f1", "f2", "f3", "f4"]
    assert ids(event="Ordered") == ["f1", "f2", "f4"]  # track event or page name
    assert ids(user_id="fu2") == ["f2", "f3"]
    assert ids(**{"from": "2021-06-01T00:00:00Z"}) == ["f2", "f3", "f4"]
    assert ids(to="2021-06-01T00:00:00Z") == ["f1"]  # the upper bound is exclusive
    assert ids(**{"from": "2021-03-01", "to": "2022-01-01"}) == ["f2", "f4"]
    assert ids(received_from=str(split)) == ["f4"]
    assert ids(received_to=str(split)) == ["f1", "f2", "f3"]
    assert ids(type="track", user_id="fu1", event="Ordered") == ["f1", "f4"]
    with shared_server.admin as admin:
        r = admin.get("/api/events", params={"from": "last tuesday"})
        assert r.status_code == 400 and r.json()["error"]["field"] == "from"
        r = admin.get("/api/events", params={"source": "no-such-source"})
        assert r.status_code == 404


def test_events_cursor_pagination_has_no_gaps_or_duplicates(shared_server):
    s = Sender(shared_server)
    s.ok("/v1/batch", {"batch": [{"type": "track" if i % 3 else "page", "userId": "pg",
                                  "event": "E", "name": "N", "messageId": f"pg-{i}"}
                                 for i in range(23)]})
    everything = s.events()
    assert len(everything) == 23

    def walk(**params) -> list[dict]:
        out, cursor = [], None
        with shared_server.admin as admin:
            for _ in range(50):
                r = admin.get("/api/events", params={"source": s.source["id"], "limit": 4,
                                                     **params,
                                                     **({"cursor": cursor} if cursor else {})})
                assert r.status_code == 200, r.text
                page = r.json()
                assert len(page["events"]) <= 4
                out.extend(page["events"])
                if not page["events"]:
                    return out
                cursor = page["next_cursor"]
        raise AssertionError("pagination did not end")

    forward = walk()
    assert [e["seq"] for e in forward] == [e["seq"] for e in everything]
    assert len({e["seq"] for e in forward}) == 23
    backward = walk(order="desc")
    assert [e["seq"] for e in backward] == [e["seq"] for e in reversed(everything)]
    pages = walk(type="page")
    assert [e["messageId"] for e in pages] == [f"pg-{i}" for i in range(0, 23, 3)]
    # A cursor at the end is a place to wait for new events, and they come after it.
    with shared_server.admin as admin:
        tail = admin.get("/api/events", params={"source": s.source["id"],
                                                "cursor": str(forward[-1]["seq"])}).json()
    assert tail["events"] == [] and int(tail["next_cursor"]) >= forward[-1]["seq"]
    s.ok("/v1/track", {"userId": "pg", "event": "Late", "messageId": "pg-late"})
    with shared_server.admin as admin:
        later = admin.get("/api/events", params={"source": s.source["id"],
                                                 "cursor": tail["next_cursor"]}).json()
    assert [e["messageId"] for e in later["events"]] == ["pg-late"]


# -- metrics -------------------------------------------------------------------------
def metric(text: str, name: str, **labels) -> float:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_accepted_rejected_and_commit_latency(sender, shared_server):
    src = sender.source["id"]
    sender.ok("/v1/batch", {"batch": [
        {"type": "track", "userId": "u", "event": "E", "messageId": "mt-1"},
        {"type": "track", "userId": "u", "event": "E", "messageId": "mt-2"},
        {"type": "identify", "userId": "u", "messageId": "mt-3"},
        {"type": "track", "userId": "u", "messageId": "mt-bad"},
        {"type": "bogus", "userId": "u"},
        {"type": "track", "userId": "u", "event": "E", "messageId": "mt-1"}]})
    assert sender.post("/v1/page", {"userId": "u", "name": 5}).status_code == 400
    text = httpx.get(f"{shared_server.url}/metrics").text
    assert metric(text, "millpond_events_accepted_total", source=src, type="track") == 2
    assert metric(text, "millpond_events_accepted_total", source=src, type="identify") == 1
    assert metric(text, "millpond_events_duplicate_total", source=src) == 1
    assert metric(text, "millpond_events_rejected_total", source=src, type="track",
                  reason="missing_field") == 1
    assert metric(text, "millpond_events_rejected_total", source=src, type="unknown",
                  reason="unknown_type") == 1
    assert metric(text, "millpond_events_rejected_total", source=src, type="page",
                  reason="invalid_field") == 1
    assert metric(text, "millpond_commit_seconds_count") >= 1
    assert metric(text, "millpond_commit_seconds_bucket", le="+Inf") == metric(
        text, "millpond_commit_seconds_count")
    assert metric(text, "millpond_log_last_seq") >= 3
    before = metric(text, "millpond_requests_refused_total", reason="unauthorized")
    httpx.post(f"{shared_server.url}/v1/track", json={"userId": "u", "event": "E"},
               auth=("bad-key", ""))
    text = httpx.get(f"{shared_server.url}/metrics").text
    assert metric(text, "millpond_requests_refused_total", reason="unauthorized") == before + 1
