"""The snippets millpond hands out (``GET /api/sources/{ref}/snippet``) work as pasted.

A user copies the snippet into a page and, at most, self-hosts the SDK file it names. The
test does exactly that: the page is the snippet verbatim, except that the jsDelivr URL
becomes the same file from ``tests/sdk/node/node_modules``, whose version must be the one
the snippet pins. The snippet's own ``page()`` call must be stored once, and the page must
talk to nothing but the two loopback servers, without an error.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.sdk.browser.harness import NODE_MODULES, SDKS, poll

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

CDN_FILE = re.compile(r"https://cdn\.jsdelivr\.net/npm/(?P<package>@[^/@]+/[^/@]+)@"
                      r"(?P<version>[^/]+)/(?P<file>[^\"']+)")

# How the test tells that the snippet's SDK has loaded (each resolves to 'ready').
READY = {
    "segment": "() => window.analytics.then(() => 'ready', (err) => 'load failed: ' + err)",
    "customerio": "() => window.analytics.then(() => 'ready', (err) => 'load failed: ' + err)",
    "rudderstack": "() => new Promise((resolve) => window.rudderanalytics.ready("
                   "() => resolve('ready')))",
}
LIBRARY = {"segment": "analytics.js", "customerio": "analytics.js",
           "rudderstack": "RudderLabs JavaScript SDK"}


def _self_hosted(snippet: str) -> str:
    """The snippet with its one jsDelivr URL pointed at the local copy of the same file."""
    match = CDN_FILE.search(snippet)
    assert match, f"no jsDelivr script URL in the snippet:\n{snippet}"
    package = json.loads((NODE_MODULES / match["package"] / "package.json").read_text())
    assert match["version"] == package["version"], \
        f"snippet pins {match['package']}@{match['version']}; tests run {package['version']}"
    assert (NODE_MODULES / match["package"] / match["file"]).is_file(), match[0]
    return snippet.replace(match[0], f"/node_modules/{match['package']}/{match['file']}")


@pytest.mark.parametrize("sdk", SDKS)
def test_snippet_as_pasted_stores_its_page_call(collector, page_server, browser_page, sdk):
    source = collector.create_source(f"snippet-{sdk}")
    with collector.admin as admin:
        answer = admin.get(f"/api/sources/{source['id']}/snippet", params={"sdk": sdk})
    assert answer.status_code == 200, answer.text
    html = ('<!doctype html>\n<html>\n<head>\n<meta charset="utf-8">\n'
            '<link rel="icon" href="data:,">\n<title>snippet</title>\n'
            f"{_self_hosted(answer.json()['text'])}</head>\n<body></body>\n</html>\n")
    page, log = browser_page.page, browser_page.log
    page.goto(page_server.add_page(f"/snippet-{sdk}.html", html))

    ready = page.evaluate(f"""() => Promise.race([({READY[sdk]})(), new Promise(
        (resolve) => setTimeout(() => resolve('not loaded within 15 s'), 15000))])""")
    assert ready == "ready", f"{sdk} snippet: {ready}\n{log.report()}"
    poll(lambda: collector.events(source=source["id"]), lambda events: len(events) >= 1,
         timeout=30, what=f"the {sdk} snippet's page call", page=page, log=log)
    log.wait_idle(page)
    events = collector.events(source=source["id"])

    assert [e["type"] for e in events] == ["page"], events
    assert events[0]["context"]["library"]["name"] == LIBRARY[sdk], events[0]
    assert events[0]["anonymousId"], events[0]
    log.assert_clean({collector.url, page_server.url})
