"""``/api/destinations``, ``/api/destination-types`` and the event tester, against a real
server; validation errors name the field; secrets are masked on every read."""

from __future__ import annotations

import httpx
import pytest

from tests.support.delivery import create_destination, send_batch, stats
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

SECRET = "mp-api-secret-0123456789"


def error(r: httpx.Response, status: int = 400) -> dict:
    assert r.status_code == status, r.text
    return r.json()["error"]


def test_catalog_lists_every_type_with_presets(admin):
    types = {t["name"]: t for t in admin.get("/api/destination-types").json()["types"]}
    assert {"webhook", "mixpanel", "segment"} <= set(types)
    assert types["mixpanel"]["presets"][0]["name"] == "Track events"


def test_create_gives_presets_connects_at_the_tail_and_masks_secrets(server, admin, vendor):
    source = server.create_source("web")
    send_batch(server.url, source["write_key"], [
        {"type": "track", "userId": "u", "event": "Before", "messageId": "b1"}])
    mp = vendor("mixpanel")
    created = create_destination(admin, name="mp", type="mixpanel",
                                 settings=mp.destination_settings())
    assert created["connected_seq"] == 1
    assert created["connected_at"].endswith("Z")
    assert [(a["name"], a["enabled"]) for a in created["actions"]] == [
        ("Track events", True), ("Page views", True), ("Screen views", True),
        ("Identify user", True), ("Sync segment membership as a trait", False)]
    assert created["rate_limit"] == {"events_per_second": 30000.0, "requests_per_second": None,
                                     "max_in_flight": 16}
    reads = [created, admin.get("/api/destinations/mp").json(),
             admin.get(f"/api/destinations/{created['id']}").json(),
             admin.get("/api/destinations").json()["destinations"][0],
             admin.patch("/api/destinations/mp", json={"name": "mp2"}).json(),
             admin.post("/api/destinations/mp2/disable").json()]
    for read in reads:
        assert read["settings"]["api_secret"] == "••••6789"
        assert SECRET not in str(read)
    assert reads[-1]["enabled"] is False and reads[-1]["stats"]["state"] == "disabled"
    # the event from before the connection is not delivered live (replays cover it)
    admin.post("/api/destinations/mp2/enable")
    send_batch(server.url, source["write_key"], [
        {"type": "track", "userId": "u", "event": "After", "messageId": "a1"}])
    assert [r["event"] for r in mp.wait_for(1)] == ["After"]


def test_sending_masked_settings_back_keeps_the_stored_secret(server, admin, vendor):
    mp = vendor("mixpanel")
    create_destination(admin, name="mp", type="mixpanel", settings=mp.destination_settings())
    masked = admin.get("/api/destinations/mp").json()["settings"]
    r = admin.patch("/api/destinations/mp", json={"settings": masked})
    assert r.status_code == 200, r.text
    source = server.create_source("web")
    send_batch(server.url, source["write_key"], [
        {"type": "track", "userId": "u", "event": "E", "messageId": "x1"}])
    mp.wait_for(1)  # the fake still accepts our credentials


@pytest.mark.parametrize("body,field,text", [
    ({"type": "nope"}, "type", "known types"),
    ({"type": "mixpanel", "settings": {"api_secret": "x" * 20}}, "settings.project_token",
     "required"),
    ({"type": "webhook", "settings": {"url": "ftp://x", "bogus": 1}}, "settings.bogus",
     "unknown setting"),
    ({"type": "webhook", "settings": {"url": "https://example.com/h"},
      "actions": [{"name": "a", "trigger": 'type = "track" and', "mapping": {}}]},
     "actions[0].trigger", "position"),
    ({"type": "webhook", "settings": {"url": "https://example.com/h"},
      "actions": [{"name": "a", "trigger": "type != null", "mapping": {"x": {"@path": 3}}}]},
     "actions[0].mapping", "@path"),
    ({"type": "webhook", "settings": {"url": "https://example.com/h"},
      "actions": [{"name": "a", "trigger": "type != null", "mapping": {},
                   "max_event_age": "3600"}]}, "actions[0].max_event_age", "unit"),
    ({"type": "mixpanel", "settings": {"project_token": "t" * 20},
      "actions": [{"name": "Track events", "trigger": "type != null",
                   "mapping": {"event": "x"}}]}, "actions[0].mapping", "properties"),
    ({"type": "webhook", "settings": {"url": "https://example.com/h"},
      "rate_limit": {"events_per_second": 10_000_000}}, "rate_limit.events_per_second",
     "at most"),
    ({"type": "webhook", "settings": {"url": "https://example.com/h"},
      "actions": [{"name": "a", "trigger": "type != null", "mapping": {}, "when": 1}]},
     "actions[0].when", "unknown field"),
])
def test_validation_names_the_field(admin, body, field, text):
    err = error(admin.post("/api/destinations", json={"name": "d", **body}))
    assert err["field"] == field, err
    assert text in err["message"], err
    assert admin.get("/api/destinations").json()["destinations"] == []


@pytest.mark.parametrize(("trigger", "message"), [
    ('type = "track" and nope', "unexpected end of input at position 23 (expected an operator"
     ' such as = or !=): `type = "track" and nope` ▶ ``'),
    ("type = ", "missing value after '=' at position 6: compare with a value, e.g. type ="
     ' "track": `type =` ▶ ` `'),
    ("event == 1", "unexpected '=' at position 7 (FQL writes these as =, and, or):"
     " `event =` ▶ `= 1`"),
])
def test_trigger_error_points_at_the_position_once(admin, trigger, message):
    err = error(admin.post("/api/destinations", json={
        "name": "d", "type": "webhook", "settings": {"url": "https://example.com/h"},
        "actions": [{"name": "a", "trigger": trigger, "mapping": {}}]}))
    assert err["message"] == f"action 'a': trigger: {message}"


def test_conflicts_not_found_and_auth(server, admin):
    body = {"name": "d", "type": "webhook", "settings": {"url": "https://example.com/h"}}
    create_destination(admin, **body)
    assert error(admin.post("/api/destinations", json=body), 409)["field"] == "name"
    assert error(admin.patch("/api/destinations/d", json={"type": "mixpanel"}), 409)
    assert error(admin.get("/api/destinations/zzz"), 404)["code"] == "not_found"
    assert error(admin.get("/api/dead-letters/999"), 404)
    assert httpx.get(f"{server.url}/api/destinations").status_code == 401
    deleted = admin.delete("/api/destinations/d").json()["deleted"]
    assert deleted["name"] == "d"
    assert error(admin.get("/api/destinations/d"), 404)


def test_patch_validates_and_restarts_delivery_with_the_new_actions(server, admin, vendor):
    hook = vendor("webhook")
    create_destination(admin, name="hook", type="webhook", settings=hook.destination_settings())
    err = error(admin.patch("/api/destinations/hook", json={"actions": [
        {"name": "x", "trigger": "type ==", "mapping": {}}]}))
    assert err["field"] == "actions[0].trigger"
    r = admin.patch("/api/destinations/hook", json={
        "actions": [{"name": "Only tracks", "trigger": 'type = "track"',
                     "mapping": {"id": {"@path": "$.messageId"}, "what": {"@path": "$.event"}}}],
        "rate_limit": {"events_per_second": 50}})
    assert r.status_code == 200, r.text
    assert r.json()["rate_limit"]["events_per_second"] == 50
    source = server.create_source("web")
    send_batch(server.url, source["write_key"], [
        {"type": "identify", "userId": "u", "messageId": "i1"},
        {"type": "track", "userId": "u", "event": "E", "messageId": "t1"}])
    assert [p for p in hook.wait_for(1)] == [{"id": "t1", "what": "E"}]
    stats = wait_until(lambda: (s := admin.get("/api/destinations/hook").json()["stats"])
                       ["cursor"] == 2 and s)
    assert stats["skipped"] == {"no action handles identify": 1}
    r = admin.patch("/api/destinations/hook", json={"actions": None})
    assert r.json()["actions"][0]["name"] == "Send event"


def test_event_tester_shows_payload_and_exact_request_without_sending(server, admin, vendor):
    mp = vendor("mixpanel")
    create_destination(admin, name="mp", type="mixpanel", settings=mp.destination_settings(),
                       enabled=False)
    event = {"type": "track", "event": "Order Completed", "userId": "u1",
             "messageId": "msg-1", "timestamp": "2024-05-01T12:00:00.000Z",
             "properties": {"revenue": 9.5}}
    r = admin.post("/api/destinations/mp/test", json={"event": event})
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["outcome"] == "handled"
    by_action = {a["action"]: a for a in result["actions"]}
    track = by_action["Track events"]
    assert track["matched"] and track["outcome"] == "send"
    assert track["payload"]["properties"]["$insert_id"] == "msg-1"
    request = track["request"]
    assert request["method"] == "POST" and "/import?strict=1" in request["url"]
    assert request["headers"]["Authorization"].startswith("••••")
    assert request["body"][0]["properties"]["time"] == 1714564800000
    assert SECRET not in str(result)
    assert by_action["Identify user"]["matched"] is False
    assert mp.requests == []  # nothing was sent
    group = admin.post("/api/destinations/mp/test",
                       json={"event": {"type": "group", "groupId": "g"}}).json()
    assert (group["outcome"], group["reason"]) == ("skipped", "no action handles group")


def test_event_tester_finds_stored_events_by_message_id_and_seq(server, admin, vendor):
    hook = vendor("webhook", secret="whsec_0123456789abcdef")
    create_destination(admin, name="hook", type="webhook", settings=hook.destination_settings())
    source = server.create_source("web")
    send_batch(server.url, source["write_key"], [
        {"type": "track", "userId": "u", "event": "E", "messageId": "stored-1"}])
    hook.wait_for(1)
    by_id = admin.post("/api/destinations/hook/test", json={"message_id": "stored-1"}).json()
    by_seq = admin.post("/api/destinations/hook/test", json={"seq": 1}).json()
    for result in (by_id, by_seq):
        assert result["event"]["messageId"] == "stored-1"
        request = result["actions"][0]["request"]
        assert request["headers"]["X-Millpond-Message-Id"] == "stored-1"
        assert request["headers"]["X-Millpond-Signature"].startswith("••••")
        assert request["body"]["messageId"] == "stored-1"
    assert error(admin.post("/api/destinations/hook/test", json={"message_id": "nope"}), 404)
    assert error(admin.post("/api/destinations/hook/test", json={"evnt": {}}))["field"] == "evnt"


def test_a_long_retry_after_is_capped_per_destination_and_retry_now_ends_it(
        server, admin, vendor):
    """#13 item 11: ``Retry-After: 3600`` parked delivery for 600 s after the vendor was
    back; only disable + enable released it."""
    hook = vendor("webhook")
    source = server.create_source("web")
    create_destination(admin, name="hook", type="webhook", settings=hook.destination_settings(),
                       rate_limit={"events_per_second": 1000, "max_retry_after": 120})
    bad = error(admin.patch("/api/destinations/hook",
                            json={"rate_limit": {"max_retry_after": 0}}))
    assert bad["field"] == "rate_limit.max_retry_after" and "seconds" in bad["message"]
    hook.fail_next(1, 429, retry_after=3600)
    send_batch(server.url, source["write_key"], [
        {"type": "track", "userId": "u", "event": "Clicked", "messageId": "r1"}])
    wait_until(lambda: stats(admin, "hook")["retry_now"], what="the destination to wait")
    waiting = stats(admin, "hook")
    assert waiting["max_retry_after"] == 120 and 60 < waiting["next_attempt_in"] <= 121
    r = admin.post("/api/destinations/hook/retry-now")
    assert r.status_code == 200 and r.json()["retried_now"] is True, r.text
    hook.wait_for(1, timeout=5)
    wait_until(lambda: stats(admin, "hook")["sent"] == 1, what="sent")
    assert stats(admin, "hook")["retried_now"] == 1
    again = admin.post("/api/destinations/hook/retry-now").json()
    assert again["retried_now"] is False and "not waiting" in again["message"]
    admin.post("/api/destinations/hook/disable")
    assert error(admin.post("/api/destinations/hook/retry-now"), 409)["field"] == "destination"
