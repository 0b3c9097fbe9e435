"""A source's ``allowed_origins``, seen from a page: a refused origin reads a 403 it can act on.

The collector must put its CORS headers on the refusal too: without them the browser hides
the answer, the page (and the SDK) sees only ``TypeError: Failed to fetch``, and the SDKs
retry a request that can never succeed. So the test reads status and JSON body from the page.
"""

from __future__ import annotations

import base64
import json

import pytest

from tests.sdk.browser.harness import origin, poll

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

# fetch() from the page; whatever happens, report what the page could see.
FETCH = """async ([url, init]) => {
  try {
    const response = await fetch(url, init);
    const text = await response.text();
    let body = null;
    try { body = JSON.parse(text); } catch (e) { body = text; }
    return { status: response.status, body };
  } catch (err) {
    return { status: null, body: String(err) };
  }
}"""


def _requests(collector_url: str, write_key: str, marker: str) -> dict[str, list]:
    """The browser requests of the three SDKs' shapes, each as [url, fetch init]."""
    def track(shape: str) -> str:
        return json.dumps({"writeKey": write_key, "type": "track", "userId": f"user-{marker}",
                           "event": f"Origin Test {marker}", "messageId": f"{marker}-{shape}"})

    basic = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    return {
        # Customer.io's shape: text/plain, key in the body, no custom header (no preflight).
        "simple POST /v1/t": [f"{collector_url}/v1/t",
                              {"method": "POST", "headers": {"Content-Type": "text/plain"},
                               "body": track("simple")}],
        # analytics-next's shape: the same plus Authorization, so the browser preflights it;
        # the preflight carries no key, only the POST can be refused.
        "preflighted POST /v1/t": [f"{collector_url}/v1/t",
                                   {"method": "POST", "body": track("preflighted"),
                                    "headers": {"Content-Type": "text/plain",
                                                "Authorization": basic}}],
        "settings GET": [f"{collector_url}/v1/projects/{write_key}/settings", {}],
        "sourceConfig GET": [f"{collector_url}/sourceConfig/?writeKey={write_key}", {}],
    }


def test_disallowed_origin_reads_a_403_and_nothing_is_stored(collector, page_server,
                                                              browser_page):
    refused = collector.create_source("browser-origin-refused",
                                      allowed_origins=["https://shop.example"])
    allowed = collector.create_source("browser-origin-allowed",
                                      allowed_origins=["https://shop.example", page_server.url])
    page, log = browser_page.page, browser_page.log
    page.goto(f"{page_server.url}/blank.html")

    for name, (url, init) in _requests(collector.url, refused["write_key"], "refused").items():
        answer = page.evaluate(FETCH, [url, init])
        assert answer["status"] == 403, (name, answer, log.report())
        body = answer["body"]
        assert isinstance(body, dict), (name, body)
        assert body["error"]["code"] == "origin_not_allowed", (name, body)
        assert body["error"]["message"], (name, body)
        assert body["code"] == "origin_not_allowed" and body["message"], (name, body)

    # The same requests for a source that lists the page's origin go through.
    for name, (url, init) in _requests(collector.url, allowed["write_key"], "allowed").items():
        answer = page.evaluate(FETCH, [url, init])
        assert 200 <= answer["status"] < 300, (name, answer, log.report())

    stored = poll(lambda: collector.events(source=allowed["id"]), lambda e: len(e) >= 2,
                  timeout=10, what="the allowed origin's two tracks", page=page)
    log.wait_idle(page)
    stored = collector.events(source=allowed["id"])
    assert sorted(e["messageId"] for e in stored) == ["allowed-preflighted", "allowed-simple"]
    assert collector.events(source=refused["id"]) == []

    # PATCH takes effect at once, both ways: lifting the restriction (null = any origin) …
    with collector.admin as admin:
        patched = admin.patch(f"/api/sources/{refused['id']}", json={"allowed_origins": None})
    assert patched.status_code == 200 and patched.json()["allowed_origins"] is None, patched.text
    url, init = _requests(collector.url, refused["write_key"], "lifted")["simple POST /v1/t"]
    answer = page.evaluate(FETCH, [url, init])
    assert 200 <= answer["status"] < 300, (answer, log.report())
    assert [e["messageId"] for e in collector.events(source=refused["id"])] == ["lifted-simple"]
    # … and dropping the page's origin from a source that had it.
    with collector.admin as admin:
        patched = admin.patch(f"/api/sources/{allowed['id']}",
                              json={"allowed_origins": ["https://shop.example"]})
    assert patched.status_code == 200, patched.text
    url, init = _requests(collector.url, allowed["write_key"], "dropped")["simple POST /v1/t"]
    answer = page.evaluate(FETCH, [url, init])
    assert answer["status"] == 403, (answer, log.report())
    assert len(collector.events(source=allowed["id"])) == 2

    # The 403s are answers the page could read: no failed request, no CORS message.
    failed = [str(s) for s in log.requests if s.failure]
    assert not failed, log.report()
    cors = [m for m in log.console_errors() if "CORS" in m or "blocked" in m]
    assert not cors, log.report()
    assert {origin(s.url) for s in log.requests} <= {collector.url, page_server.url}, \
        log.report()
