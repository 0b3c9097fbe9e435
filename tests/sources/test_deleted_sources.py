"""Deleting a source against a real server: its events keep what they were.

Replayability is a property of where an event came from, so deleting a ``track``
(non-replayable) source must not let a default replay send its events, and a deleted
source's events stay findable by ``messageId`` (the event tester, ``/api/events``)."""

from __future__ import annotations

import httpx
import pytest

from tests.support.delivery import create_destination, send_batch, track

pytestmark = pytest.mark.slow


def _track_api_event(server, source: dict, customer: str) -> None:
    r = httpx.post(f"{server.url}/api/v1/customers/{customer}/events",
                   auth=(source["site_id"], source["write_key"]),
                   json={"name": "purchased", "data": {"price": 23.45}})
    assert r.status_code == 200, r.text


def test_deleting_a_track_source_keeps_its_events_out_of_replays(server, vendor):
    hook = vendor("webhook")
    web = server.create_source("web")
    crm = server.create_source("crm", kind="track")
    send_batch(server.url, web["write_key"], [track("u1", i) for i in range(6)])
    for n in range(4):
        _track_api_event(server, crm, f"cust{n}")
    [stored, *_] = server.events(source=crm["id"])
    with server.admin as admin:
        create_destination(admin, name="hook", type="webhook",
                           settings=hook.destination_settings())
        preview = {"destination": "hook", "dry_run": True}
        before = admin.post("/api/replays", json=preview)
        assert before.status_code == 200, before.text
        assert before.json()["preview"]["by_source"] == {"web": 6}
        assert before.json()["preview"]["excluded"][0]["events"] == 4

        r = admin.delete(f"/api/sources/{crm['id']}")
        assert r.status_code == 200 and r.json()["deleted"]["deleted_at"] > 0, r.text
        assert [s["name"] for s in admin.get("/api/sources").json()["sources"]] == ["web"]

        after = admin.post("/api/replays", json=preview)
        assert after.status_code == 200, after.text
        assert after.json()["preview"]["by_source"] == {"web": 6}
        [excluded] = after.json()["preview"]["excluded"]
        assert excluded["name"] == "crm" and excluded["events"] == 4
        assert "deleted" in excluded["reason"] and "not replayable" in excluded["reason"]
        started = admin.post("/api/replays", json={"destination": "hook"})
        assert started.status_code == 201, started.text
        assert started.json()["estimate"]["events"] == 6

        # the deleted source's events are still found by messageId and by source id
        tested = admin.post("/api/destinations/hook/test",
                            json={"message_id": stored["messageId"]})
        assert tested.status_code == 200, tested.text
        assert tested.json()["event"]["messageId"] == stored["messageId"]
        by_id = admin.get("/api/events", params={"message_id": stored["messageId"]})
        assert [e["seq"] for e in by_id.json()["events"]] == [stored["seq"]], by_id.text
        assert len(admin.get("/api/events", params={"source": crm["id"]}).json()["events"]) == 4

        # its write key is refused, its name is free again
        r = httpx.post(f"{server.url}/api/v1/customers/late/events",
                       auth=(crm["site_id"], crm["write_key"]), json={"name": "late"})
        assert r.status_code == 401, r.text
        again = server.create_source("crm")
        assert again["id"] != crm["id"] and again["replayable"] is True
