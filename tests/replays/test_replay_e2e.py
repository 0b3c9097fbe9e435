"""Replay end to end: ``millpond serve`` subprocess, webhook fakes on loopback, SDK-shaped
traffic. The exactly-once property: a destination connected later and given a replay of
everything before its connection ends with the same events as one connected from the
start, also when the server is SIGKILLed mid-replay. Slow-marked."""

from __future__ import annotations

import time

import pytest

from tests.support.delivery import SteadySender, create_destination, send_batch, track
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow


def replay(admin, rid: str) -> dict:
    r = admin.get(f"/api/replays/{rid}")
    r.raise_for_status()
    return r.json()


@pytest.mark.parametrize("kill", [False, True], ids=["normal", "sigkill-mid-replay"])
def test_late_destination_plus_replay_gets_every_event_exactly_once(
        server_factory, vendor, kill):
    server = server_factory()
    a = vendor("webhook", batch_size=100)
    b = vendor("webhook", batch_size=20)
    source = server.create_source("web")
    with server.admin as admin:
        create_destination(admin, name="A", type="webhook", settings=a.destination_settings(),
                           rate_limit={"events_per_second": 20_000})
        # history: some events carry past timestamps (a backfill), most are "now"
        past = [track(f"user{i % 9}", i, timestamp=f"2024-0{1 + i % 9}-01T00:00:00Z")
                for i in range(400)]
        send_batch(server.url, source["write_key"], past)
        sender = SteadySender(server.url, source["write_key"], rate=200, users=9)
        sender.start()
        time.sleep(3)
        # one request at a time (the webhook's default is 16, and a pump keeps up to twice
        # that many batches going): what a kill may resend is then one batch per run
        create_destination(admin, name="B", type="webhook", settings=b.destination_settings(),
                           rate_limit={"events_per_second": 600 if kill else 5000,
                                       "max_in_flight": 1})
        time.sleep(1.5)  # live keeps flowing to both while B's replay runs
        preview = admin.post("/api/replays", json={"destination": "B", "dry_run": True})
        assert preview.status_code == 200, preview.text
        before = preview.json()["preview"]["events"]
        assert before >= 400 + 400
        r = admin.post("/api/replays", json={"destination": "B"})
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
        assert r.json()["estimate"]["events"] == before
        if kill:
            wait_until(lambda: replay(admin, rid)["progress"]["sent"] >= 300, what="replay")
    if kill:
        server.kill()
        killed_at = replay_sent = len(b.received)
        server.start()
    with server.admin as admin:
        done = wait_until(lambda: (r := replay(admin, rid))["state"] == "completed" and r,
                          timeout=60, what="replay to complete")
        sent = sender.stop()
        # while the server was down the sender's requests were refused (not acknowledged)
        assert kill or not sender.errors
        expected = {m["messageId"] for m in past + sent}
        wait_until(lambda: expected <= {p["messageId"] for p in a.received}
                   and len(b.received) >= len(a.received), timeout=60,
                   what="both destinations to catch up")
        time.sleep(1.5)
    got_a = [p["messageId"] for p in a.received]
    got_b = [p["messageId"] for p in b.received]
    assert len(got_b) == len(set(got_b)) == len(got_a)
    assert set(got_b) == set(got_a) and expected <= set(got_a)
    assert done["progress"]["scanned"] == before
    assert done["progress"]["sent"] >= before  # + at most the in-flight batch after a kill
    assert done["report"]["summary"]
    if kill:
        # duplicates are only the requests in flight at the kill, dropped by messageId:
        # one batch of 20 for each of B's runs (live and the replay)
        assert b.duplicates <= 2 * 20, b.duplicates
        print(f"\nkilled after {killed_at} B records ({replay_sent}); duplicates {b.duplicates}")
    else:
        assert b.duplicates == 0 and a.duplicates == 0
