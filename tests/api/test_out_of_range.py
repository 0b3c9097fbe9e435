"""Numbers out of range are a 400 naming the field, never a 500 (issue 13, item 8).

Integers beyond 64 bits and floats that overflow (``1e400`` is infinity to a JSON reader)
reached SQLite or ``int()`` and failed there. Each admin operation that takes a number
or a time bound is tried with both kinds, as a query, path or body value.
"""

from __future__ import annotations

import pytest

from tests.support.delivery import create_destination

pytestmark = pytest.mark.slow

HUGE = "99999999999999999999"  # > 2**64


@pytest.fixture(scope="module")
def ctx(shared_server):
    shared_server.create_source("oor-web")
    with shared_server.admin as admin:
        create_destination(admin, name="oor-hook", type="webhook",
                           settings={"url": "http://127.0.0.1:9/hook"})
    return shared_server


@pytest.mark.parametrize("params,field", [
    ({"cursor": HUGE}, "cursor"),
    ({"cursor": HUGE, "order": "desc"}, "cursor"),
    ({"from": "1e400"}, "from"),
    ({"from": HUGE}, "from"),
    ({"to": "-1e400"}, "to"),
    ({"received_from": "1e400"}, "received_from"),
    ({"received_to": "-99999999999999w"}, "received_to"),
])
def test_events_query(ctx, params, field):
    with ctx.admin as admin:
        r = admin.get("/api/events", params=params)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["field"] == field


@pytest.mark.parametrize("params,message", [
    ({"limit": "0"}, "limit must be at least 1; got '0'"),
    ({"limit": "5000"}, "limit must be at most 1000; got '5000'"),
    ({"limit": "ten"}, "limit must be a whole number; got 'ten'"),
    ({"order": "up"}, "order must be 'asc' or 'desc'; got 'up'"),
    ({"type": ["track", "tracks"]},
     "type must be 'identify', 'track', 'page', 'screen', 'group' or 'alias'; got 'tracks'"),
])
def test_events_query_errors_say_what_is_allowed_and_what_came(ctx, params, message):
    """Said as millpond's own errors are, not in the validation library's words; an
    unknown type is refused, not answered with an empty page."""
    with ctx.admin as admin:
        r = admin.get("/api/events", params=params)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"] == message


@pytest.mark.parametrize("path", ["/api/rejections", "/api/people"])
@pytest.mark.parametrize("cursor", [HUGE, "²"])  # "²" is a digit to str.isdigit
def test_other_cursors(ctx, path, cursor):
    with ctx.admin as admin:
        r = admin.get(path, params={"cursor": cursor})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["field"] == "cursor"


@pytest.mark.parametrize("path,field", [
    (f"/api/dead-letters/{HUGE}", "dead_letter_id"),
    (f"/api/destinations/oor-hook/dead-letters?cursor={HUGE}", "cursor"),
])
def test_dead_letter_ids_and_cursors(ctx, path, field):
    with ctx.admin as admin:
        r = admin.get(path)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["field"] == field


@pytest.mark.parametrize("method,path,body,field", [
    ("POST", "/api/destinations/oor-hook/dead-letters/redrive", f'{{"ids": [{HUGE}]}}',
     "ids[0]"),
    ("POST", "/api/destinations/oor-hook/test", f'{{"seq": {HUGE}}}', "seq"),
    ("POST", "/api/destinations/oor-hook/test", '{"seq": 1e400}', "seq"),
    ("POST", "/api/replays", '{"destination": "oor-hook", "rate": 1e400}', "rate"),
    ("POST", "/api/replays", '{"destination": "oor-hook", "from": 1e400}', "from"),
    ("POST", "/api/replays", '{"destination": "oor-hook", "to": "1e400"}', "to"),
    ("POST", "/api/replays", f'{{"destination": "oor-hook", "from": {HUGE}}}', "from"),
    ("PATCH", "/api/destinations/oor-hook", '{"rate_limit": {"events_per_second": 1e400}}',
     "rate_limit.events_per_second"),
])
def test_bodies(ctx, method, path, body, field):
    with ctx.admin as admin:
        r = admin.request(method, path, content=body,
                          headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["field"] == field, error
    assert field.split(".")[-1].split("[")[0] in error["message"], error
