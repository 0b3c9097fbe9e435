"""``/api/replays`` against a real server: preview with a group-less destination, refusals
with reasons and statuses, lifecycle routes, list."""

from __future__ import annotations

import pytest

from tests.support.delivery import create_destination, send_batch, track
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow


def test_preview_refusals_and_lifecycle(server, vendor):
    mixpanel = vendor("mixpanel")
    web = server.create_source("web")
    server.create_source("crm", kind="track")
    groups = [{"type": "group", "userId": f"u{i}", "groupId": "acme",
               "messageId": f"g{i}"} for i in range(7)]
    send_batch(server.url, web["write_key"], [track("u1", i) for i in range(20)] + groups)
    with server.admin as admin:
        create_destination(admin, name="mp", type="mixpanel",
                           settings=mixpanel.destination_settings(),
                           rate_limit={"events_per_second": 10})
        r = admin.post("/api/replays", json={"destination": "mp", "dry_run": True,
                                             "sources": ["web", "crm"]})
        assert r.status_code == 200, r.text
        pv = r.json()["preview"]
        assert pv["by_type"] == {"track": 20, "group": 7}
        assert pv["unhandled"][0]["message"] == \
            "7 group events: no action of this destination handles group"
        assert pv["excluded"][0]["name"] == "crm"
        assert r.json()["estimate"]["seconds"] == 2.0  # 20 sends at 10/s
        refusals = [
            ({"destination": "mp", "sources": ["crm"]}, 400, "only non-replayable sources"),
            ({"destination": "mp", "from": "2030-01-01T00:00:00Z",
              "to": "2029-01-01T00:00:00Z"}, 400, "empty window"),
            ({"destination": "mp", "rate": 11}, 400, "above the destination's rate limit"),
            ({"destination": "mp", "rate": 0}, 400, 'above 0 and at most 100000; got 0;'
             ' e.g. "rate": 50'),
            ({"destination": "nope"}, 404, "no destination"),
            ({"destination": "mp", "bogus": 1}, 400, "unknown field"),
        ]
        for body, status, text in refusals:
            r = admin.post("/api/replays", json=body)
            assert r.status_code == status and text in r.json()["error"]["message"], r.text
        r = admin.post("/api/replays", json={"destination": "mp"})
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
        assert r.json()["estimate"] == {"events": 27, "seconds": 2.7}
        second = admin.post("/api/replays", json={"destination": "mp"})
        assert second.status_code == 409 and rid in second.json()["error"]["message"]
        assert admin.post(f"/api/replays/{rid}/pause").json()["state"] == "paused"
        assert admin.post(f"/api/replays/{rid}/pause").status_code == 409
        assert admin.post(f"/api/replays/{rid}/resume").json()["state"] == "running"
        done = wait_until(lambda: (x := admin.get(f"/api/replays/{rid}").json())["state"]
                          == "completed" and x, what="replay")
        assert done["progress"]["skipped"] == {"no action handles group": 7}
        assert done["progress"]["sent"] == 20 and done["progress"]["scanned"] == 27
        listed = admin.get("/api/replays").json()["replays"]
        assert [x["id"] for x in listed] == [rid]
        assert admin.get("/api/replays/rpl_nope").status_code == 404
        admin.patch("/api/destinations/mp", json={"enabled": False})
        r = admin.post("/api/replays", json={"destination": "mp"})
        assert r.status_code == 409 and "disabled" in r.json()["error"]["message"]
    assert len(mixpanel.received) == 20 and mixpanel.duplicates == 0


def test_half_typed_filters_and_triggers_are_refused_up_front(server, vendor):
    """A filter or trigger with nothing after its operator is a 400 naming the field, and
    nothing starts (it once started a replay that skipped every event)."""
    hook = vendor("webhook")
    web = server.create_source("web")
    send_batch(server.url, web["write_key"], [track("u1", i) for i in range(5)])
    with server.admin as admin:
        create_destination(admin, name="hook", type="webhook",
                           settings=hook.destination_settings())
        for dry_run in (True, False):
            r = admin.post("/api/replays", json={"destination": "hook", "filter": "type = ",
                                                 "dry_run": dry_run, "include_live": True})
            assert r.status_code == 400, r.text
            error = r.json()["error"]
            assert error["field"] == "filter" and "missing value after '='" in error["message"]
        assert admin.get("/api/replays").json()["replays"] == []
        r = admin.post("/api/destinations", json={
            "name": "half", "type": "webhook", "settings": hook.destination_settings(),
            "actions": [{"name": "a", "trigger": 'event = "x" and type != ',
                         "mapping": {"e": {"@path": "$.event"}}}]})
        assert r.status_code == 400 and r.json()["error"]["field"] == "actions[0].trigger"


def test_disable_pauses_with_the_reason_and_delete_keeps_the_history(server, vendor):
    """#13 item 6: a replay of a disabled destination said ``running``; after a delete,
    ``GET /api/replays/{id}`` answered 404; the default window read ``1970-01-01 … now``."""
    hook = vendor("webhook")
    web = server.create_source("web")
    send_batch(server.url, web["write_key"], [
        track("u1", i, timestamp=f"2024-03-0{1 + i % 5}T00:00:00Z") for i in range(30)])
    with server.admin as admin:
        dest = create_destination(admin, name="hook", type="webhook",
                                  settings=hook.destination_settings(),
                                  rate_limit={"events_per_second": 10})
        r = admin.post("/api/replays", json={"destination": "hook"})
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
        assert r.json()["window"]["from"] == "2024-03-01T00:00:00.000Z"
        assert r.json()["window"]["to"] == dest["connected_at"]
        assert admin.post("/api/destinations/hook/disable").status_code == 200
        paused = admin.get(f"/api/replays/{rid}").json()
        assert paused["state"] == "paused" and "disabled" in paused["reason"]
        assert admin.post("/api/destinations/hook/enable").status_code == 200
        assert admin.get(f"/api/replays/{rid}").json()["state"] == "running"
        assert admin.delete("/api/destinations/hook").status_code == 200
        gone = admin.get(f"/api/replays/{rid}")
        assert gone.status_code == 200, gone.text
        body = gone.json()
        assert body["destination_deleted"] is True and body["destination_name"] == "hook"
        assert body["state"] == "cancelled" and body["reason"] == "destination deleted"
        assert [x["id"] for x in admin.get("/api/replays").json()["replays"]] == [rid]
