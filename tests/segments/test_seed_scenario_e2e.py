"""The seed's scenario end to end, on a real server with vendor fakes.

"If you base segment membership on events, backfilling events will add people to
segments correctly. However, if you use event-based segment membership as a campaign
trigger, backfilled events will not reliably trigger campaigns." millpond makes that
rule explicit: two-year-old backfilled purchases put people in the segment, their
``Audience Entered`` carries the two-year-old event time, the Customer.io action (72 h
``max_event_age``) skips them with its reason while a webhook receives them; a purchase
made now makes someone enter, and both destinations receive that entry.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.support.delivery import create_destination, stats
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow


def iso(delta: timedelta) -> str:
    return (datetime.now(UTC) - delta).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def audience(received: list[dict], key: str = "event") -> list[dict]:
    return [r for r in received if r.get(key) == "Audience Entered"
            or r.get("name") == "Audience Entered"]


def test_backfilled_entries_skip_the_campaign_and_reach_the_webhook(server, vendor):
    hook, customerio = vendor("webhook"), vendor("customerio")
    server.create_source("history", kind="import")
    web = server.create_source("web")
    with server.admin as admin:
        create_destination(admin, name="hook", type="webhook",
                           settings=hook.destination_settings())
        create_destination(admin, name="campaigns", type="customerio",
                           settings=customerio.destination_settings())
        lines = [{"type": "track", "userId": user, "event": "Order Completed",
                  "messageId": f"old-{user}", "timestamp": iso(timedelta(days=730)),
                  "properties": {"revenue": 10}} for user in ("ann", "bob")]
        job = admin.post("/api/imports", params={"source": "history", "kind": "events",
                                                 "format": "jsonl", "file_name": "h.jsonl",
                                                 "wait": "true"},
                         content=("\n".join(json.dumps(x) for x in lines) + "\n").encode(),
                         headers={"Content-Type": "application/x-ndjson"})
        assert job.status_code == 202, job.text

        created = admin.post("/api/segments", json={
            "key": "buyers", "name": "Buyers", "definition": {"event": "Order Completed"}})
        assert created.status_code == 201, created.text
        seg = created.json()
        assert seg["state"] in ("building", "ready")
        wait_until(lambda: admin.get(f"/api/segments/{seg['id']}").json()["state"] == "ready",
                   what="segment ready")
        assert admin.get("/api/segments/buyers").json()["members"] == 2

        hook.wait_for(4)  # two old purchases, two entries
        entries = audience(hook.received)
        assert sorted(e["userId"] for e in entries) == ["ann", "bob"]
        assert all(e["timestamp"].startswith(iso(timedelta(days=730))[:10]) for e in entries)
        wait_until(lambda: stats(admin, "campaigns")["skipped"].get(
            "older than trigger window", 0) >= 4, what="campaign skips")
        assert audience(customerio.received) == []

        # A purchase now: cat enters, and both destinations receive it.
        r = httpx.post(f"{server.url}/v1/identify", auth=(web["write_key"], ""),
                       json={"userId": "cat", "traits": {"plan": "pro"}})
        assert r.status_code == 200, r.text
        r = httpx.post(f"{server.url}/v1/track", auth=(web["write_key"], ""),
                       json={"userId": "cat", "event": "Order Completed",
                             "properties": {"revenue": 5}})
        assert r.status_code == 200, r.text
        wait_until(lambda: len(audience(hook.received)) == 3, what="webhook gets cat's entry")
        wait_until(lambda: audience(customerio.received), what="campaign gets cat's entry")
        person = admin.get("/api/people/cat").json()
        assert [s["key"] for s in person["segments"]] == ["buyers"]
        why = admin.get("/api/people/cat/segments/buyers").json()
        assert why["member"] is True and why["conditions"]["count"] == 1
        assert [h["member"] for h in why["history"]] == [True]
        members = admin.get("/api/segments/buyers/members", params={"limit": 2}).json()
        assert len(members["people"]) == 2 and members["next_cursor"]
    names = [r.get("name") for r in customerio.received]
    assert names.count("Audience Entered") == 1
