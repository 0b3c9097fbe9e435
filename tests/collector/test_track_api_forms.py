"""The classic Track API takes HTML-form bodies, as Customer.io's own backfill example sends.

The seed example, byte for byte: ``curl -i -d name=purchased -d data[price]=23.45
-d timestamp=1359389415`` (curl sends it as ``application/x-www-form-urlencoded``).
"""

from __future__ import annotations

import shutil
import subprocess
import uuid

import httpx
import pytest

from tests.support.errors import assert_error_shape


@pytest.fixture(scope="module")
def track(shared_server):
    source = shared_server.create_source("form-track", kind="track")
    return shared_server, source


def _events(srv, user_id: str) -> list[dict]:
    return srv.events(user_id=user_id)


def test_the_seed_curl_example_byte_for_byte(track) -> None:
    srv, source = track
    user = f"cust-{uuid.uuid4().hex[:8]}"
    curl = shutil.which("curl")
    assert curl, "curl is needed for this test"
    done = subprocess.run(
        [curl, "-sS", "-i", "-u", f"{source['site_id']}:{source['write_key']}",
         f"{srv.url}/api/v1/customers/{user}/events",
         "-d", "name=purchased", "-d", "data[price]=23.45", "-d", "timestamp=1359389415"],
        capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("HTTP/1.1 200"), done.stdout
    [event] = _events(srv, user)
    assert event["type"] == "track" and event["event"] == "purchased"
    assert event["properties"] == {"price": "23.45"}
    assert event["timestamp"] == "2013-01-28T16:10:15.000Z"


def test_forms_nest_like_rails_on_every_endpoint(track) -> None:
    srv, source = track
    auth = (source["site_id"], source["write_key"])
    user = f"cust-{uuid.uuid4().hex[:8]}"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    r = httpx.put(f"{srv.url}/api/v1/customers/{user}", auth=auth, headers=form,
                  content="email=ada%40example.com&attributes[plan]=pro"
                          "&attributes[tags][]=a&attributes[tags][]=b&_timestamp=1700000000")
    assert r.status_code == 200, r.text
    r = httpx.post(f"{srv.url}/api/v1/customers/{user}/events", auth=auth, headers=form,
                   content="name=viewed&type=page&data[items][0][sku]=x&data[items][1][sku]=y"
                           "&id=form-dedupe-1")
    assert r.status_code == 200, r.text
    anon = f"anon-{uuid.uuid4().hex[:8]}"
    r = httpx.post(f"{srv.url}/api/v1/events", auth=auth, headers=form,
                   content=f"name=visited&anonymous_id={anon}&data[ref]=ad")
    assert r.status_code == 200, r.text
    identify, page = sorted(_events(srv, user), key=lambda e: e["type"])
    assert identify["traits"] == {"email": "ada@example.com", "plan": "pro", "tags": ["a", "b"],
                                  "_timestamp": "1700000000"}
    assert identify["timestamp"] == "2023-11-14T22:13:20.000Z"
    assert page["type"] == "page" and page["name"] == "viewed"
    assert page["properties"] == {"items": [{"sku": "x"}, {"sku": "y"}]}
    assert page["messageId"] == "form-dedupe-1"
    [anonymous] = [e for e in srv.events(type="track") if e.get("anonymousId") == anon]
    assert anonymous["properties"] == {"ref": "ad"}


@pytest.mark.parametrize(("body", "field"), [
    ("data[price]=1", "name"),                       # the same check as JSON bodies
    ("name=x&timestamp=yesterday", "timestamp"),
    ("name=x&data=flat&data[a]=1", "data"),          # data must be an object
    ("name=x&bogus=1", "bogus"),
    ("name=x&a[b][c][d][e][f][g]=deep", None),       # deeper than any attribute set
])
def test_bad_forms_get_the_json_bodies_errors(track, body, field) -> None:
    srv, source = track
    user = f"cust-{uuid.uuid4().hex[:8]}"
    r = httpx.post(f"{srv.url}/api/v1/customers/{user}/events",
                   auth=(source["site_id"], source["write_key"]), content=body,
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400, r.text
    error = assert_error_shape(r)
    if field:
        assert error["field"] == field, error
    assert _events(srv, user) == []


def test_segment_api_still_refuses_forms(track) -> None:
    srv, _ = track
    source = srv.create_source(f"form-pipe-{uuid.uuid4().hex[:6]}")
    r = httpx.post(f"{srv.url}/v1/track", auth=(source["write_key"], ""),
                   content="event=x&userId=u",
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415
