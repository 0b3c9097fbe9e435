"""``/api/segments`` and ``millpond segments`` against a real server fed by real
Segment calls: create, build, preview, members, why, update, delete; bad input is a 400
naming the field (one CLI line), and saves nothing."""

from __future__ import annotations

import json
import re

from millpond.timeutil import format_ms, parse_iso_ms
from tests.support.cli import fails, millpond, ok
from tests.support.delivery import send_batch
from tests.support.wait import wait_until

DAY = 86_400_000


def _feed(server) -> None:
    key = server.create_source("seg-web")["write_key"]
    send_batch(server.url, key, [
        {"type": "identify", "userId": "sg-ada", "anonymousId": "sg-anon-1",
         "traits": {"plan": "pro"}},
        {"type": "track", "anonymousId": "sg-anon-1", "event": "Order Completed",
         "properties": {"total": 80}},
        {"type": "track", "userId": "sg-ada", "event": "Order Completed",
         "properties": {"total": 20}},
        {"type": "identify", "userId": "sg-bob", "traits": {"plan": "free"}},
        {"type": "track", "userId": "sg-bob", "event": "Order Completed",
         "properties": {"total": 90}},
    ])


BAD = [
    ({"key": "x", "definition": {"trait": "plan", "op": "equals", "value": 1}},
     "definition.op"),
    ({"key": "x", "definition": {"all": [{"event": "A", "where": "properties.x = "}]}},
     "definition.all[0].where"),
    ({"key": "x", "definition": {"in_segment": "x"}}, "definition.in_segment"),
    ({"key": "x", "definition": {"in_segment": "nope"}}, "definition.in_segment"),
    ({"key": "Bad Key", "definition": {"event": "A"}}, "key"),
    ({"key": "x"}, "definition"),
    ({"key": "x", "definition": {"event": "A"}, "colour": 1}, "colour"),
    (["not", "an", "object"], None),
]


def test_segments_api(server) -> None:
    _feed(server)
    with server.admin as admin:
        for body, field in BAD:
            r = admin.post("/api/segments", json=body)
            assert r.status_code == 400, (body, r.text)
            assert r.json()["error"].get("field") == field, r.text
        assert admin.get("/api/segments").json() == {"segments": []}  # nothing saved

        definition = {"all": [{"trait": "plan", "op": "eq", "value": "pro"},
                              {"event": "Order Completed", "at_least": 2}]}
        preview = admin.post("/api/segments/preview", json={"definition": definition}).json()
        assert preview["count"] == 1 and preview["sample"][0]["user_id"] == "sg-ada"
        assert "why" not in preview
        why_bob = admin.post("/api/segments/preview",
                             json={"definition": definition, "person": "sg-bob"}).json()
        assert why_bob["count"] == 1 and why_bob["why"]["member"] is False
        trait, event = why_bob["why"]["conditions"]["all"]
        assert (trait["actual"], event["count"]) == ("free", 1)
        why_anon = admin.post("/api/segments/preview", json={"definition": definition,
                                                             "person": "sg-anon-1"}).json()
        assert why_anon["why"]["member"] is True  # ada, by her anonymous id
        for person, status in (("nobody", 404), (5, 400), ("  ", 400)):
            r = admin.post("/api/segments/preview", json={"definition": definition,
                                                          "person": person})
            assert r.status_code == status and r.json()["error"]["field"] == "person", r.text
        assert admin.get("/api/segments").json() == {"segments": []}  # preview saves nothing

        seg = admin.post("/api/segments", json={"key": "pro-repeat", "name": "Pro, repeat",
                                                 "definition": definition})
        assert seg.status_code == 201, seg.text
        sid = seg.json()["id"]
        wait_until(lambda: admin.get(f"/api/segments/{sid}").json()["state"] == "ready",
                   what="built")
        taken = admin.post("/api/segments", json={"key": "pro-repeat",
                                                   "definition": {"event": "A"}})
        assert taken.status_code == 409 and taken.json()["error"]["field"] == "key"
        members = admin.get("/api/segments/pro-repeat/members").json()
        assert [p["user_id"] for p in members["people"]] == ["sg-ada"]
        assert members["next_cursor"] is None
        ada = admin.get("/api/people/sg-ada").json()
        assert [s["key"] for s in ada["segments"]] == ["pro-repeat"]
        why = admin.get("/api/people/sg-bob/segments/pro-repeat").json()
        assert why["member"] is False
        trait, event = why["conditions"]["all"]
        assert (trait["actual"], trait["result"]) == ("free", False)
        assert (event["count"], event["result"]) == (1, False)
        assert admin.get("/api/people/nobody/segments/pro-repeat").status_code == 404
        assert admin.get("/api/segments/nope").status_code == 404

        bad = admin.patch(f"/api/segments/{sid}", json={"definition": {"not": []}})
        assert bad.status_code == 400 and bad.json()["error"]["field"] == "definition.not"
        assert admin.get(f"/api/segments/{sid}").json()["definition"] == definition
        changed = admin.patch(f"/api/segments/{sid}",
                              json={"definition": {"event": "Order Completed",
                                                   "where": "properties.total > 50"}})
        assert changed.status_code == 200, changed.text
        wait_until(lambda: admin.get(f"/api/segments/{sid}").json()["members"] == 2,
                   what="rebuilt with both")
        parent = admin.post("/api/segments", json={"key": "parent",
                                                    "definition": {"in_segment": "pro-repeat"}})
        assert parent.status_code == 201
        refused = admin.delete(f"/api/segments/{sid}")
        assert refused.status_code == 409
        assert admin.delete("/api/segments/parent").status_code == 200
        assert admin.delete(f"/api/segments/{sid}").status_code == 200
        assert admin.get("/api/people/sg-ada").json()["segments"] == []


def test_segments_cli(server, tmp_path) -> None:
    _feed(server)
    definition = '{"event": "Order Completed", "where": "properties.total > 50"}'
    # The field once: the message names it (else "(field …)" is added, as for retention).
    bad = millpond(server, "segments", "add", "big", "--definition", '{"event": 5}')
    fails(bad, "definition.event")
    assert bad.stderr.strip() == "error: definition.event: an event name (text), got 5"
    fails(millpond(server, "sources", "add", "x", "--retention", "5x"), "(field retention)")
    fails(millpond(server, "segments", "add", "big", "--definition", "{nope"), "not JSON")
    assert json.loads(ok(server, "segments", "list", "--json")) == {"segments": []}
    out = ok(server, "segments", "preview", "--definition", definition)
    assert "2 member(s)" in out
    explained = ok(server, "segments", "preview", "--definition", definition, "--why", "sg-bob")
    assert re.search(r"^prf_\S+ would be a member since \S+$", explained, re.MULTILINE)
    assert "[yes] event 'Order Completed': 1 counted (seq " in explained
    # Matching events outside a window are shown too, with the window.
    old = ok(server, "segments", "preview", "--why", "sg-bob", "--definition",
             '{"event": "Order Completed", "between": ["2020-01-01", "2021-01-01"]}')
    assert re.search(r"^\[no \] event 'Order Completed' from 2020-01-01T00:00:00\.000Z to "
                     r"before 2021-01-01T00:00:00\.000Z: 0 counted; 1 not counted "
                     r"\(seq \d+ at \S+\)$", old, re.MULTILINE), old
    fails(millpond(server, "segments", "preview", "--definition", definition, "--why",
                   "nobody"), "no person with id 'nobody'")
    piped = millpond(server, "segments", "preview", "--definition", "@-", stdin=definition)
    assert piped.returncode == 0 and "2 member(s)" in piped.stdout, piped.stderr
    path = tmp_path / "big.json"
    path.write_text(definition)
    assert "saved" in ok(server, "segments", "add", "big", "--name", "Big orders",
                         "--definition", f"@{path}")
    wait_until(lambda: json.loads(ok(server, "segments", "show", "big", "--json"))["state"]
               == "ready", what="built")
    assert "big" in ok(server, "segments", "list")
    members = json.loads(ok(server, "segments", "members", "big", "--json"))
    assert sorted(p["user_id"] for p in members["people"]) == ["sg-ada", "sg-bob"]
    # The log's table says which segment each Audience event is of.
    entered = ok(server, "events", "list", "--source", "computed")
    assert len(re.findall(r"\tAudience Entered of big\tsg-(?:ada|bob)\t", entered)) == 2, \
        entered
    why = ok(server, "segments", "why", "sg-bob", "big")
    assert re.search(r"^prf_\S+ is a member of big since \S+$", why, re.MULTILINE), why
    assert "1 counted (seq " in why
    assert re.search(r"^history:\n  entered at \S+ \(event time\), processed \S+$", why,
                     re.MULTILINE), why
    # the segment given first, as `segments members` takes it: the error says the order
    fails(millpond(server, "segments", "why", "big", "sg-bob"),
          "no segment 'sg-bob'; the person comes first: millpond segments why sg-bob big")
    assert "\nsegments: big (since " in ok(server, "people", "show", "sg-bob")
    # A window: the line says when time passing alone changes the answer.
    ok(server, "segments", "add", "recent", "--definition",
       '{"event": "Order Completed", "within": "30d"}')
    wait_until(lambda: json.loads(ok(server, "segments", "show", "recent", "--json"))["state"]
               == "ready", what="built")
    ordered = json.loads(ok(server, "segments", "why", "sg-bob", "recent", "--json"))
    leaves = format_ms(parse_iso_ms(ordered["conditions"]["events"][0]["timestamp"]) + 30 * DAY)
    assert f"; by time passing alone, this changes at {leaves}\n" in ok(
        server, "segments", "why", "sg-bob", "recent")
    # Another segment in a definition: in or out of it, and since when.
    since = ordered["since"]
    assert f"\n[yes] in segment recent since {since}\n" in ok(
        server, "segments", "preview", "--why", "sg-bob", "--definition",
        '{"in_segment": "recent"}')
    assert "updated" in ok(server, "segments", "update", "big", "--name", "Bigger")
    assert "deleted" in ok(server, "segments", "delete", "big")
    fails(millpond(server, "segments", "show", "big"), "no segment")


def test_a_building_segment_reads_with_its_progress_and_time_left() -> None:
    from millpond.cli.segments import segment_row

    seg = {"id": "seg_1", "key": "k", "name": "K", "state": "building", "members": 0,
           "progress": {"phase": "scanning", "done": 700_000, "total": 1_315_852,
                        "unit": "events", "eta_seconds": 1.5}}
    assert segment_row(seg)["state"] == \
        "building (scanning 700,000/1,315,852 events, about 1.5 s left)"
    seg["progress"]["eta_seconds"] = None
    assert segment_row(seg)["state"] == "building (scanning 700,000/1,315,852 events)"
    seg["progress"] = {"phase": "waiting", "done": 0, "total": 0, "unit": "events",
                       "eta_seconds": None}
    assert segment_row(seg)["state"] == "building (waiting for the build running now)"


def test_a_state_no_event_dates_reads_as_such() -> None:
    """Retention took all of a person's events: their exit has no event time."""
    from millpond.cli.segments import history_line, since_text

    assert since_text(None) == "since always"
    assert since_text("2026-12-01T10:00:00.000Z") == "since 2026-12-01T10:00:00.000Z"
    assert history_line({"member": False, "at": None, "processed_at": "2026-12-06T18:50Z"}) \
        == "  exited with no event time left, processed 2026-12-06T18:50Z"
    assert history_line({"member": True, "at": "2026-11-01T10:00Z", "processed_at": "x"}) \
        == "  entered at 2026-11-01T10:00Z (event time), processed x"
