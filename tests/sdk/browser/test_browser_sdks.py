"""The three browser SDKs, in real Chromium, on a page of another origin, deliver to millpond.

Issue #11. Each SDK is loaded as its documentation tells a user (shared/browser-sdks.md,
sections 3-5; the pages are in ``pages/``), changing only the CDN/config URL, the data-plane
host and the write key, in its standard and in its batching mode. The page sends identify,
track (with a past timestamp where the SDK allows one), page and group. Then:

* every call is stored exactly once, with the right type, ids, event or page name,
  properties or traits, ``groupId`` and the SDK's own ``context.library``;
* the SDK used the endpoints of its mode (one request per call, or batches);
* the browser saw no failed request, no answer >= 400, no console error (a CORS refusal is
  one) and made no request to any host but the page server and millpond.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from functools import cache

import pytest

from tests.sdk.browser.harness import MODES, NODE_MODULES, SDKS, poll, wait_sdk_ready

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

PAST = datetime(2021, 3, 4, 5, 6, 7, tzinfo=UTC)
PAST_ISO = "2021-03-04T05:06:07.000Z"

# The collector paths each SDK posts its events to (spec sections 3.2-3.3, 4.2, 5.2).
ENDPOINTS = {
    ("segment", "standard"): {"/v1/i", "/v1/t", "/v1/p", "/v1/g"},
    ("customerio", "standard"): {"/v1/i", "/v1/t", "/v1/p", "/v1/g"},
    ("rudderstack", "standard"): {"/v1/identify", "/v1/track", "/v1/page", "/v1/group"},
    ("segment", "batching"): {"/v1/b"},
    ("customerio", "batching"): {"/v1/b"},
    ("rudderstack", "batching"): {"/v1/batch"},
}


@cache
def _version(package: str) -> str:
    return json.loads((NODE_MODULES / package / "package.json").read_text())["version"]


def _library(sdk: str) -> dict:
    """``context.library`` as each UMD build sends it (spec, table of section 1)."""
    if sdk == "segment":
        return {"name": "analytics.js", "version": "next-" + _version("@segment/analytics-next")}
    if sdk == "customerio":
        return {"name": "analytics.js",
                "version": "next-" + _version("@customerio/cdp-analytics-browser")}
    return {"name": "RudderLabs JavaScript SDK", "version": _version("@rudderstack/analytics-js")}


def _calls(sdk: str, mode: str) -> dict:
    """What the page sends; every value carries a fresh marker so a stray event can't match."""
    run = uuid.uuid4().hex[:10]
    return {
        "userId": f"user-{run}",
        "traits": {"email": f"{run}@example.com", "plan": "pro", "marker": run},
        "event": f"Order Completed {run}",
        "properties": {"revenue": 42.5, "sku": f"sku-{run}", "sdk": sdk, "mode": mode},
        "pastTimestamp": PAST_ISO,
        "category": "Docs",
        "pageName": f"Home {run}",
        "pageProperties": {"section": f"section-{run}"},
        "groupId": f"group-{run}",
        "groupTraits": {"name": f"Acme {run}", "employees": 12},
    }


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _contains(stored: dict | None, sent: dict, what: str) -> None:
    """``sent`` is part of ``stored``: the SDKs add their own keys (page url, title, …)."""
    assert isinstance(stored, dict), f"{what}: stored {stored!r}, sent {sent!r}"
    missing = {k: v for k, v in sent.items() if stored.get(k) != v}
    assert not missing, f"{what}: {missing} not stored as sent; stored {stored!r}"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sdk", SDKS)
def test_browser_sdk_stores_each_call_once(collector, page_server, browser_page, sdk, mode):
    source = collector.create_source(f"browser-{sdk}-{mode}")
    page, log = browser_page.page, browser_page.log
    started = datetime.now(UTC)

    page.goto(page_server.sdk_page(sdk, mode, source["write_key"]))
    wait_sdk_ready(page, log, f"{sdk} ({mode})")

    calls = _calls(sdk, mode)
    anonymous_id = page.evaluate("(m) => window.sendAll(m)", calls)
    assert anonymous_id, "the SDK has no anonymousId"

    poll(lambda: collector.events(source=source["id"]), lambda events: len(events) >= 4,
         timeout=30, what=f"{sdk} ({mode}): 4 stored events", page=page, log=log)
    # Let every request (retries included) finish, then read again: a duplicate stored late
    # by a retry would show now.
    log.wait_for_posts(page, collector.url, ENDPOINTS[(sdk, mode)])
    log.wait_idle(page)
    events = collector.events(source=source["id"])

    types = sorted(e["type"] for e in events)
    assert types == ["group", "identify", "page", "track"], (types, events, log.report())
    by_type = {e["type"]: e for e in events}
    for kind, event in by_type.items():
        assert event["source_id"] == source["id"]
        assert event["userId"] == calls["userId"], (kind, event)
        assert event["anonymousId"] == anonymous_id, (kind, event)
        library = event["context"]["library"]
        _contains(library, _library(sdk), f"{kind} context.library")
        if kind != "track":  # stamped by the SDK at the call
            assert abs(_parse(event["timestamp"]) - started) < timedelta(minutes=5), event

    # identify: RudderStack sends the traits only in context.traits; millpond copies them.
    _contains(by_type["identify"].get("traits"), calls["traits"], "identify traits")

    track = by_type["track"]
    assert track["event"] == calls["event"]
    assert track["properties"] == calls["properties"]
    if sdk == "rudderstack":
        # RudderStack has no `timestamp` option: its `originalTimestamp` is kept as sent and
        # the collector corrects it for the device's clock skew (receivedAt - sentAt), which
        # on one machine is the time the event waited in the SDK's queue.
        assert track["originalTimestamp"] == PAST_ISO
        assert timedelta(0) <= _parse(track["timestamp"]) - PAST < timedelta(seconds=60), track
    else:
        assert _parse(track["timestamp"]) == PAST, track

    page_event = by_type["page"]
    assert page_event["name"] == calls["pageName"], page_event
    _contains(page_event.get("properties"), calls["pageProperties"], "page properties")

    group = by_type["group"]
    assert group["groupId"] == calls["groupId"], group
    _contains(group.get("traits"), calls["groupTraits"], "group traits")

    log.assert_clean({collector.url, page_server.url})
    assert set(log.posts(collector.url)) == ENDPOINTS[(sdk, mode)], log.report()
