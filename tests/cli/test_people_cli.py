"""``GET /api/people`` and its twins ``millpond people list|search``, against a real
server fed by real Segment calls: found by id, email or a trait value, paged, and bad
input refused with one line."""

from __future__ import annotations

import json

from tests.support.cli import fails, millpond, ok
from tests.support.delivery import send_batch
from tests.support.wait import wait_until


def _feed(server) -> None:
    key = server.create_source("people-search-web")["write_key"]
    send_batch(server.url, key, [
        {"type": "identify", "userId": "ps-ada", "anonymousId": "ps-anon-1",
         "traits": {"email": "Ada@PS-Example.com", "name": "Ada Lovelace", "plan": "pro"}},
        {"type": "identify", "userId": "ps-alan",
         "traits": {"email": "alan@ps-example.com", "name": "Alan Turing", "plan": "free"}},
        {"type": "track", "anonymousId": "ps-anon-2", "event": "Viewed"},  # no profile
        {"type": "identify", "anonymousId": "ps-anon-3", "traits": {"plan": "pro"}},
    ])


def test_people_search_api(server) -> None:
    _feed(server)
    with server.admin as admin:  # no wait: the route catches the profiles up first
        def users(**params) -> list:
            r = admin.get("/api/people", params=params)
            assert r.status_code == 200, r.text
            return [p["user_id"] or p["anonymous_ids"][0] for p in r.json()["people"]]

        assert users(query="ps-ada") == ["ps-ada"]
        assert users(query="ada@ps-example.COM") == ["ps-ada"]
        assert users(query="turing") == ["ps-alan"]
        assert users(query="ps-anon-1") == ["ps-ada"]
        assert users(query="ps-anon-2") == []          # anonymous tracks make no profile
        assert sorted(users(query="ps-")) == ["ps-ada", "ps-alan", "ps-anon-3"]
        assert {"ps-ada", "ps-anon-3"} <= set(users(query="pro", limit=1000))
        everyone = users(limit=1000)
        assert {"ps-ada", "ps-alan", "ps-anon-3"} <= set(everyone)
        first = admin.get("/api/people", params={"query": "ps-", "limit": 2}).json()
        rest = admin.get("/api/people", params={"query": "ps-", "limit": 2,
                                                "cursor": first["next_cursor"]}).json()
        assert len(first["people"]) == 2 and len(rest["people"]) == 1
        assert rest["next_cursor"] is None
        assert first["people"][0] == admin.get(
            f"/api/people/{first['people'][0]['id']}").json()
        bad = admin.get("/api/people", params={"cursor": "nope"})
        assert bad.status_code == 400 and bad.json()["error"]["field"] == "cursor"
        zero = admin.get("/api/people", params={"limit": 0})
        assert zero.status_code == 400 and zero.json()["error"]["field"] == "limit"


def test_people_list_and_search_cli(server) -> None:
    _feed(server)
    out = ok(server, "people", "search", "lovelace")
    assert "ps-ada" in out and "Ada@PS-Example.com" in out and "ps-alan" not in out
    found = json.loads(ok(server, "people", "search", "PS-EXAMPLE", "--json"))
    assert sorted(p["user_id"] for p in found["people"]) == ["ps-ada", "ps-alan"]
    assert ok(server, "people", "search", "alan@", "--field", "people.0.user_id") == \
        "ps-alan\n"
    listed = ok(server, "people", "list", "--limit", "1000", "--field", "people.user_id")
    assert {"ps-ada", "ps-alan"} <= set(listed.split())
    page = ok(server, "people", "list", "--limit", "1")
    assert "more: add --cursor" in page
    assert "no person found" in ok(server, "people", "search", "ps-nobody-at-all")
    fails(millpond(server, "people", "list", "--cursor", "nope"), "cursor")


def test_people_show_prints_values_as_sent_and_the_segments(server) -> None:
    key = server.create_source("people-show-web")["write_key"]
    send_batch(server.url, key, [
        {"type": "identify", "userId": "pshow-1",
         "traits": {"address": {"city": "Oslo"}, "vip": True, "plan": "pro"}}])
    out = ok(server, "people", "show", "pshow-1")
    rows = {line.split("\t")[0]: line.split("\t") for line in out.splitlines()}
    assert rows["trait"] == ["trait", "value", "set at", "seq", "source_id"]
    assert [rows[t][1] for t in ("address", "plan", "vip")] == ['{"city": "Oslo"}', "pro",
                                                                "true"]
    assert rows["plan"][4].startswith("src_") and rows["plan"][3].isdigit()
    assert "segments: none" in out


def test_a_person_only_events_name_is_shown_with_their_segments(server) -> None:
    """No identify, group or alias: no profile, yet they are in segments, with an
    activity log. Found by the id their events carry, or the profile id segments give
    them; an anonymous id is one too; an id nothing was sent with is not."""
    key = server.create_source("people-track-only")["write_key"]
    send_batch(server.url, key, [
        {"type": "track", "userId": "pto-buyer", "event": "Order Completed"},
        {"type": "track", "anonymousId": "pto-anon", "event": "Viewed"}])
    with server.admin as admin:
        made = admin.post("/api/segments", json={"key": "pto-buyers", "definition": {
            "event": "Order Completed"}})
        assert made.status_code == 201, made.text
        wait_until(lambda: admin.get("/api/segments/pto-buyers").json()["state"] == "ready",
                   what="built")
        person = admin.get("/api/people/pto-buyer").json()
        assert (person["user_id"], person["user_ids"], person["traits"]) == (
            "pto-buyer", ["pto-buyer"], {})
        assert [s["key"] for s in person["segments"]] == ["pto-buyers"]
        assert person["id"].startswith("prf_")
        assert admin.get(f"/api/people/{person['id']}").json() == person
        anon = admin.get("/api/people/pto-anon").json()
        assert (anon["user_id"], anon["anonymous_ids"], anon["segments"]) == (
            None, ["pto-anon"], [])
        assert admin.get("/api/people/pto-nobody").status_code == 404
    shown = ok(server, "people", "show", "pto-buyer")
    assert "\ntraits: none\n" in shown and "segments: pto-buyers (since " in shown
