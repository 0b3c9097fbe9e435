"""Deletion leaves no trace: after a ``delete`` regulation, the person's ids and a unique
trait value are found nowhere (the admin API, a byte-level search of every file in the
data dir), every destination with a deletion API received its documented call, one
without says ``not_supported`` with why, and a replay started before the deletion
finishes without sending the person."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.support.delivery import create_destination, send_batch
from tests.support.wait import wait_until


def _iso(minutes_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat()


def _files_with(data_dir: Path, needles: list[bytes]) -> list[str]:
    found = []
    for path in sorted(data_dir.rglob("*")):
        if path.is_file():
            blob = path.read_bytes()
            found += [f"{path.relative_to(data_dir)} holds {n!r}" for n in needles if n in blob]
    return found


def test_a_deleted_person_is_found_nowhere(server, vendor):
    tag = uuid.uuid4().hex[:10]
    ada, anon, anon2 = f"ada-{tag}", f"anon-{tag}", f"phone-{tag}"
    secret = f"zq{tag}@lovelace.example"
    hook = vendor("webhook")
    fakes = {name: vendor(name) for name in ("customerio", "amplitude", "mixpanel", "posthog")}
    web = server.create_source("web")
    key = web["write_key"]
    with server.admin as admin:
        for name, fake in fakes.items():
            create_destination(admin, name=name, type=name,
                               settings=fake.destination_settings())
        created = admin.post("/api/segments", json={
            "key": "buyers", "name": "Buyers", "definition": {"event": "Order Completed"}})
        assert created.status_code == 201, created.text
        # Others' purchases first in event time, Ada's last: a slow replay reaches her
        # events only after the deletion was accepted.
        others = [{"type": "track", "userId": f"user-{i % 40}", "event": "Order Completed",
                   "messageId": f"o-{tag}-{i}", "timestamp": _iso(600 - i * 0.5),
                   "properties": {"n": i}} for i in range(240)]
        mine = [{"type": "identify", "userId": ada, "anonymousId": anon,
                 "messageId": f"a-{tag}-id", "timestamp": _iso(30),
                 "traits": {"email": secret, "name": "Ada Lovelace"}},
                {"type": "alias", "userId": ada, "previousId": anon2,
                 "messageId": f"a-{tag}-alias", "timestamp": _iso(29)},
                {"type": "track", "anonymousId": anon2, "event": "Viewed",
                 "messageId": f"a-{tag}-v", "timestamp": _iso(28)},
                *({"type": "track", "userId": ada, "event": "Order Completed",
                   "messageId": f"a-{tag}-{i}", "timestamp": _iso(20 - i),
                   "properties": {"note": secret}} for i in range(5))]
        send_batch(server.url, key, others + mine)
        wait_until(lambda: admin.get(f"/api/people/{ada}").status_code == 200,
                   what="Ada's profile")
        wait_until(lambda: any(m["user_id"] == ada for m in admin.get(
            "/api/segments/buyers/members").json()["people"]), what="Ada in the segment")
        wait_until(lambda: any(r.get("userId") == ada for r in fakes["mixpanel"].received
                               ) or fakes["mixpanel"].received, what="live delivery")

        # A destination connected now: its replay covers the whole past, slowly.
        create_destination(admin, name="hook", type="webhook",
                           settings=hook.destination_settings(),
                           rate_limit={"events_per_second": 100})
        replay = admin.post("/api/replays", json={"destination": "hook", "rate": 60})
        assert replay.status_code in (200, 201), replay.text
        replay_id = replay.json()["id"]
        wait_until(lambda: len(hook.received) >= 10, what="the replay under way")

        asked = admin.post("/api/regulations", json={
            "type": "delete", "user_ids": [ada], "requested_by": "dpo@example.com"})
        assert asked.status_code == 201, asked.text
        reg = asked.json()
        assert reg["state"] == "running" and reg["requested_by"] == "dpo@example.com"
        assert sorted(reg["ids"]) == sorted([ada, anon, anon2])  # the whole profile
        wait_until(lambda: admin.get(f"/api/regulations/{reg['id']}").json()["state"]
                   == "finished", timeout=60, what="the deletion finished")
        done = admin.get(f"/api/regulations/{reg['id']}").json()
        stores = {name: (s["state"], s["removed"]) for name, s in done["stores"].items()}
        # hers, and the Audience Entered the segment engine appended for her
        assert stores["events"] == ("done", len(mine) + 1)
        assert stores["profiles"] == ("done", 1)
        assert stores["segment_memberships"] == ("done", 1)
        assert all(state == "done" for state, _ in stores.values()), stores
        by_name = {d["name"]: d for d in done["destinations"].values()}
        assert {n: d["state"] for n, d in by_name.items()} == {
            "customerio": "done", "amplitude": "done", "mixpanel": "done", "posthog": "done",
            "hook": "not_supported"}
        assert "no deletion API" in by_name["hook"]["reason"]
        # the finished record keeps digests, not the ids
        assert ada not in str(done) and done["ids"][0].startswith("blake2b:")

        wait_until(lambda: admin.get(f"/api/replays/{replay_id}").json()["state"]
                   == "completed", timeout=60, what="the replay finished")
        # it had read her events ahead (one chunk) before they went: the screen skipped them
        progress = admin.get(f"/api/replays/{replay_id}").json()["progress"]
        assert progress["skipped"].get("deleted", 0) >= 1, progress
        assert admin.get(f"/api/people/{ada}").status_code == 404
        for query in (ada, anon, anon2, secret, "lovelace"):
            assert admin.get("/api/people", params={"query": query}).json()["people"] == []
        assert server.events(user_id=ada) == []
        assert not any(ada in m["user_id"] for m in admin.get(
            "/api/segments/buyers/members", params={"limit": 1000}).json()["people"])

    # the vendors received their documented deletion calls
    assert fakes["customerio"].deleted == [ada]
    assert [i for i, _ in fakes["amplitude"].deleted] == [ada]
    assert sorted(fakes["mixpanel"].deleted) == sorted([ada, anon, anon2])
    assert sorted(i for i, _ in fakes["posthog"].deleted) == sorted([ada, anon, anon2])
    assert all(events for _, events in fakes["posthog"].deleted)
    # the replay sent everyone else's purchases, none of Ada's events
    sent = b"".join(r.body for r in hook.requests)
    assert b"user-0" in sent
    for needle in (ada, anon, anon2, secret):
        assert needle.encode() not in sent
    # and not one byte of her is left in any file of the data dir
    left = _files_with(server.data_dir, [ada.encode(), anon.encode(), anon2.encode(),
                                         secret.encode()])
    assert left == [], "\n".join(left)
