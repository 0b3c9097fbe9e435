"""``GET /api/destinations/{ref}/outcomes`` (and its CLI twin): the events behind each count
of the delivery funnel, against a real server and a webhook fake that refuses."""

from __future__ import annotations

import json

import pytest

from tests.support.cli import fails, millpond, ok
from tests.support.delivery import create_destination, send_batch, stats
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

ACTION = "Send tracks"


def _seqs(admin, ref: str, step: str, **params) -> list[int]:
    r = admin.get(f"/api/destinations/{ref}/outcomes", params={"step": step, **params})
    assert r.status_code == 200, r.text
    return [e["seq"] for e in r.json()["events"]]


def test_each_count_lists_exactly_the_events_behind_it(server, admin, vendor):
    source = server.create_source("web")
    fake = vendor("webhook")
    # The wrong path: the fake answers 404, a permanent refusal (a dead letter).
    create_destination(admin, name="hook", type="webhook",
                       settings={"url": fake.url + "/wrong"},
                       actions=[{"name": ACTION, "trigger": 'type = "track"',
                                 "mapping": {"@path": "$."}, "max_event_age": "24h"}])
    send_batch(server.url, source["write_key"], [
        {"type": "track", "userId": "u1", "event": "Old", "messageId": "old",
         "timestamp": "2020-01-01T00:00:00Z"},
        {"type": "track", "userId": "u1", "event": "New", "messageId": "new"},
        {"type": "identify", "userId": "u1", "messageId": "who", "traits": {"a": 1}},
    ])
    wait_until(lambda: stats(admin, "hook")["cursor"] == 3, what="all three events delivered")
    st = stats(admin, "hook")
    assert st["actions"][ACTION]["skipped"] == {"older than trigger window": 1}
    assert st["actions"][ACTION]["dead_lettered_by"] == {"HTTP 404": 1}

    old, new, who = 1, 2, 3
    assert _seqs(admin, "hook", "skipped", action=ACTION,
                 reason="older than trigger window") == [old]
    assert _seqs(admin, "hook", "skipped", action=ACTION) == [old]
    assert _seqs(admin, "hook", "dead_lettered", action=ACTION, reason="HTTP 404") == [new]
    assert _seqs(admin, "hook", "dead_lettered", action=ACTION) == [new]
    assert _seqs(admin, "hook", "sent", action=ACTION) == []
    assert sorted(_seqs(admin, "hook", "matched", action=ACTION)) == [old, new]
    assert _seqs(admin, "hook", "mapped", action=ACTION) == [new]  # the old one was not
    assert sorted(_seqs(admin, "hook", "received")) == [old, new, who]
    assert _seqs(admin, "hook", "skipped", action="") == [who]  # no action handles it
    page = admin.get("/api/destinations/hook/outcomes",
                     params={"step": "received", "limit": 2}).json()
    assert len(page["events"]) == 2 and page["next_cursor"]
    rest = admin.get("/api/destinations/hook/outcomes",
                     params={"step": "received", "cursor": page["next_cursor"]}).json()
    assert sorted(e["seq"] for e in page["events"] + rest["events"]) == [old, new, who]
    assert rest["next_cursor"] is None
    [shown] = admin.get("/api/destinations/hook/outcomes",
                        params={"step": "dead_lettered", "action": ACTION}).json()["events"]
    assert shown["event"]["messageId"] == "new" and shown["event"]["seq"] == new

    def error(status: int, **params) -> str:
        r = admin.get("/api/destinations/hook/outcomes", params=params)
        assert r.status_code == status, r.text
        return r.json()["error"]["message"]

    assert "per action" in error(400, step="sent")
    assert "no replay 'live2'" in error(404, step="sent", action=ACTION, run="live2")
    assert "page cursor" in error(400, step="received", cursor="nope")
    assert error(400, step="bogus")
    r = admin.get("/api/destinations/nope/outcomes", params={"step": "received"})
    assert r.status_code == 404

    # the CLI twin
    listed = json.loads(ok(server, "destinations", "outcomes", "hook", "dead_lettered",
                           "--action", ACTION, "--json"))
    assert [e["seq"] for e in listed["events"]] == [new]
    table = ok(server, "destinations", "outcomes", "hook", "skipped", "--action", ACTION,
               "--reason", "older than trigger window")
    assert "old" in table and "new" not in table
    fails(millpond(server, "destinations", "outcomes", "hook", "sent"), "per action")
