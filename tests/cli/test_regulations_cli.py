"""``millpond regulations add|list|show`` against a real server, and the API's refusals
of bad input (a clear JSON error, nothing stored; the CLI: one line, non-zero exit)."""

from __future__ import annotations

import json

from tests.support.cli import fails, millpond, ok
from tests.support.delivery import send_batch
from tests.support.wait import wait_until


def test_regulations_add_list_show(server) -> None:
    key = server.create_source("reg-web")["write_key"]
    send_batch(server.url, key, [{"type": "identify", "userId": "rc-ann",
                                  "anonymousId": "rc-anon", "traits": {"plan": "pro"}}])
    out = ok(server, "regulations", "add", "suppress", "--user-id", "rc-ann",
             "--requested-by", "ticket 7")
    assert out.startswith("regulation reg_") and "suppress of 2 ids, active" in out
    made = json.loads(ok(server, "regulations", "add", "delete", "--anonymous-id", "rc-anon",
                         "--json"))
    assert made["type"] == "delete" and sorted(made["ids"]) == ["rc-ann", "rc-anon"]
    with server.admin as admin:
        wait_until(lambda: admin.get(f"/api/regulations/{made['id']}").json()["state"]
                   == "finished", what="the deletion finished")
    listed = ok(server, "regulations", "list")
    assert "ticket 7" in listed and made["id"] in listed
    shown = ok(server, "regulations", "show", made["id"])
    assert "store events" in shown and "done" in shown
    assert json.loads(ok(server, "regulations", "show", made["id"], "--json"))[
        "stores"]["profiles"]["state"] == "done"
    fails(millpond(server, "regulations", "show", "reg_nope"), "no regulation")
    fails(millpond(server, "regulations", "add", "delete"), "--user-id")


def test_bad_regulations_are_refused_and_store_nothing(server) -> None:
    with server.admin as admin:
        for body, field in [({"type": "delete"}, "user_ids"),
                            ({"type": "forget", "user_ids": ["x"]}, "type"),
                            ({"type": "delete", "user_ids": [""]}, "user_ids[0]"),
                            ({"type": "delete", "user_ids": ["  "]}, "user_ids[0]"),
                            ({"type": "delete", "user_ids": "x"}, "user_ids"),
                            ({"type": "delete", "user_ids": ["x"], "extra": 1}, "extra")]:
            r = admin.post("/api/regulations", json=body)
            assert r.status_code == 400, (body, r.text)
            assert r.json()["error"]["field"] == field, (body, r.json())
        assert admin.get("/api/regulations").json()["regulations"] == []
        missing = admin.get("/api/regulations/reg_nope")
        assert missing.status_code == 404 and missing.json()["error"]["field"] == "id"
