"""Who may do what: write keys only write to their own source, only the admin token admins."""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.support.server import ADMIN_TOKEN, ServerProcess

ADMIN_CALLS = [
    ("GET", "/api/sources"),
    ("POST", "/api/sources"),
    ("GET", "/api/events"),
    ("GET", "/api/rejections"),
]


def send(server: ServerProcess, message_id: str, **kwargs) -> httpx.Response:
    body = {"userId": "u1", "event": "Auth", "messageId": message_id, **kwargs.pop("body", {})}
    return httpx.post(f"{server.url}/v1/track", json=body, **kwargs)


def source_of(server: ServerProcess, message_id: str) -> list[str]:
    return [e["source_id"] for e in server.events() if e["messageId"] == message_id]


def error_of(r: httpx.Response) -> dict:
    return r.json()["error"]


def test_write_key_writes_only_to_its_own_source(shared_server):
    a = shared_server.create_source("auth-a")
    b = shared_server.create_source("auth-b")
    assert send(shared_server, "same-id", auth=(a["write_key"], "")).status_code == 200
    assert send(shared_server, "same-id", auth=(b["write_key"], "")).status_code == 200
    assert sorted(source_of(shared_server, "same-id")) == sorted([a["id"], b["id"]])
    assert [e["messageId"] for e in shared_server.events(source=a["id"])] == ["same-id"]
    # A writeKey in the body names no other source when Basic auth already does.
    r = send(shared_server, "body-b", auth=(a["write_key"], ""), body={"writeKey": b["write_key"]})
    assert r.status_code == 200
    assert source_of(shared_server, "body-b") == [a["id"]]


def test_bearer_write_key_and_write_key_in_body(shared_server):
    source = shared_server.create_source("auth-forms")
    r = send(shared_server, "bearer-1", headers={"Authorization": f"Bearer {source['write_key']}"})
    assert r.status_code == 200, r.text
    r = send(shared_server, "body-1", body={"writeKey": source["write_key"]})
    assert r.status_code == 200, r.text
    r = httpx.post(f"{shared_server.url}/v1/batch", json={
        "writeKey": source["write_key"],
        "batch": [{"type": "track", "userId": "u", "event": "E", "messageId": "body-batch"}]})
    assert r.status_code == 200, r.text
    for mid in ("bearer-1", "body-1", "body-batch"):
        assert source_of(shared_server, mid) == [source["id"]]
    stored = next(e for e in shared_server.events() if e["messageId"] == "body-1")
    assert "writeKey" not in stored  # the credential is not kept in the log


@pytest.mark.parametrize(("method", "path"), ADMIN_CALLS)
def test_write_key_cannot_use_the_admin_api(shared_server, method, path):
    source = shared_server.create_source(f"auth-admin-{method}-{path.replace('/', '-')}")
    for auth in ({"Authorization": f"Bearer {source['write_key']}"},
                 {"Authorization": "Basic " + base64.b64encode(
                     f"{source['write_key']}:".encode()).decode()}):
        r = httpx.request(method, shared_server.url + path, headers=auth, json={"name": "x"})
        assert r.status_code == 401, r.text
        assert error_of(r)["code"] == "unauthorized"


@pytest.mark.parametrize(("method", "path"), ADMIN_CALLS)
def test_admin_api_needs_the_admin_token(shared_server, method, path):
    before = httpx.get(f"{shared_server.url}/api/sources",
                       headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
    for headers, needle in (({}, "Bearer <admin token>"),
                            ({"Authorization": "Bearer wrong-token"}, "invalid admin token"),
                            ({"Authorization": f"Bearer {ADMIN_TOKEN}x"}, "invalid admin token"),
                            ({"Authorization": f"Token {ADMIN_TOKEN}"}, "Bearer <admin token>"),
                            ({"Authorization": "Bearer"}, "Bearer <admin token>")):
        r = httpx.request(method, shared_server.url + path, headers=headers,
                          json={"name": "sneaky", "kind": "pipelines"})
        assert r.status_code == 401, (headers, r.text)
        assert error_of(r)["code"] == "unauthorized"
        assert needle in error_of(r)["message"]
    after = httpx.get(f"{shared_server.url}/api/sources",
                      headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
    assert after == before  # nothing was created


def test_rotate_key_invalidates_the_old_key(shared_server):
    source = shared_server.create_source("auth-rotate")
    assert send(shared_server, "before-rotate", auth=(source["write_key"], "")).status_code == 200
    with shared_server.admin as admin:
        rotated = admin.post(f"/api/sources/{source['id']}/rotate-key").json()
    assert rotated["id"] == source["id"] and rotated["write_key"] != source["write_key"]
    r = send(shared_server, "old-key", auth=(source["write_key"], ""))
    assert r.status_code == 401 and error_of(r)["message"] == "invalid write key"
    r = send(shared_server, "old-key-in-body", body={"writeKey": source["write_key"]})
    assert r.status_code == 401
    assert send(shared_server, "new-key", auth=(rotated["write_key"], "")).status_code == 200
    assert source_of(shared_server, "new-key") == [source["id"]]
    assert source_of(shared_server, "old-key") == []
    assert source_of(shared_server, "old-key-in-body") == []


def test_deleted_source_key_stops_working_but_events_stay(shared_server):
    source = shared_server.create_source("auth-delete")
    assert send(shared_server, "pre-delete", auth=(source["write_key"], "")).status_code == 200
    with shared_server.admin as admin:
        assert admin.delete(f"/api/sources/{source['id']}").status_code == 200
    assert send(shared_server, "post-delete", auth=(source["write_key"], "")).status_code == 401
    assert source_of(shared_server, "pre-delete") == [source["id"]]


def test_track_api_credentials(shared_server):
    track = shared_server.create_source("auth-track", kind="track")
    pipes = shared_server.create_source("auth-pipes")
    url = f"{shared_server.url}/api/v1/customers/cust-1"
    ok = httpx.put(url, json={"email": "a@example.com"}, auth=(track["site_id"],
                                                               track["write_key"]))
    assert ok.status_code == 200, ok.text
    for auth in ((track["site_id"], "wrong-api-key"), ("wrong-site", track["write_key"]),
                 (pipes["write_key"], ""), (pipes["write_key"], pipes["write_key"]),
                 (ADMIN_TOKEN, "")):
        r = httpx.put(url, json={"email": "b@example.com"}, auth=auth)
        assert r.status_code == 401, (auth, r.text)
        assert error_of(r)["code"] == "unauthorized"
    r = httpx.put(url, json={"email": "c@example.com"})
    assert r.status_code == 401 and "site id" in error_of(r)["message"]
    # A track source's key does not open the Segment API either.
    r = send(shared_server, "track-on-v1", auth=(track["write_key"], ""))
    assert r.status_code == 403 and "Track API" in error_of(r)["message"]
    # Rotating the key changes the Track API key too.
    with shared_server.admin as admin:
        rotated = admin.post(f"/api/sources/{track['id']}/rotate-key").json()
    r = httpx.put(url, json={"email": "d@example.com"}, auth=(track["site_id"],
                                                              track["write_key"]))
    assert r.status_code == 401
    r = httpx.put(url, json={"email": "e@example.com"}, auth=(track["site_id"],
                                                              rotated["write_key"]))
    assert r.status_code == 200
    emails = [e["traits"]["email"] for e in shared_server.events(source=track["id"])]
    assert emails == ["a@example.com", "e@example.com"]
