"""End to end: Segment calls into a real server come out of ``/api/people/{id}`` right."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.slow


def test_out_of_order_updates_through_the_server(server) -> None:  # type: ignore[no-untyped-def]
    source = server.create_source("web")
    batch = [
        # Arrives first, but its _timestamp is later: it must win over m1.
        {
            "type": "identify",
            "userId": "u1",
            "anonymousId": "a1",
            "messageId": "m2",
            "traits": {"plan": "pro", "_timestamp": 1714564900},
        },
        {
            "type": "identify",
            "userId": "u1",
            "messageId": "m1",
            "traits": {"plan": "free", "email": "x@example.com", "_timestamp": 1714564800},
        },
        {"type": "alias", "previousId": "a1", "userId": "u2", "messageId": "m3"},
        {
            "type": "group",
            "userId": "u2",
            "groupId": "g1",
            "messageId": "m4",
            "traits": {"name": "Acme"},
        },
    ]
    r = httpx.post(f"{server.url}/v1/batch", auth=(source["write_key"], ""), json={"batch": batch})
    assert r.status_code == 200, r.text

    answer = server.admin.get("/api/people/a1")
    assert answer.status_code == 200, answer.text
    person = answer.json()
    assert person["traits"] == {"plan": "pro", "email": "x@example.com"}
    assert person["trait_times"]["plan"] == "2024-05-01T12:01:40.000Z"
    assert person["trait_sources"]["plan"]["messageId"] == "m2"
    assert person["trait_sources"]["plan"]["source_id"] == source["id"]
    assert person["user_ids"] == ["u1", "u2"]
    assert person["user_id"] == "u2"
    assert person["anonymous_ids"] == ["a1"]
    assert person["groups"] == {"g1": {"name": "Acme"}}
    assert server.admin.get(f"/api/people/{person['id']}").json() == person
    assert server.admin.get("/api/people/nobody").status_code == 404
