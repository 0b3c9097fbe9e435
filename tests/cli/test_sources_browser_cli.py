"""``millpond sources snippet`` and ``sources update``: what a user pastes and changes."""

from __future__ import annotations

import json

import pytest

from millpond.sources.snippets import VERSIONS
from tests.support.cli import fails, millpond, ok


@pytest.fixture(scope="module")
def web(shared_server):
    return json.loads(ok(shared_server, "sources", "add", "snip-web", "--json"))


@pytest.mark.parametrize(("sdk", "needles"), [
    ("segment", ["@segment/analytics-next@{v}/dist/umd/index.js", 'cdnURL: "{url}"',
                 'apiHost: "{host}/v1"', 'protocol: "http"']),
    ("customerio", ["@customerio/cdp-analytics-browser@{v}/dist/umd/index.js",
                    'cdnURL: "{url}/customerio"']),
    ("rudderstack", ["@rudderstack/analytics-js@{v}/dist/npm/modern/bundled/umd/index.js",
                     '"{url}", {{ configUrl: "{url}" }}']),
])
def test_snippet_has_this_server_and_the_write_key(shared_server, web, sdk, needles) -> None:
    host = shared_server.url.removeprefix("http://")
    text = ok(shared_server, "sources", "snippet", "snip-web", "--sdk", sdk)
    assert text.startswith("<script src=")
    assert web["write_key"] in text
    for needle in needles:
        assert needle.format(v=VERSIONS[sdk], url=shared_server.url, host=host) in text, text
    npm = ok(shared_server, "sources", "snippet", "snip-web", "--sdk", sdk, "--npm")
    assert npm.startswith("// npm install") and "import {" in npm
    assert web["write_key"] in npm and shared_server.url in npm
    as_json = json.loads(ok(shared_server, "sources", "snippet", web["id"], "--sdk", sdk, "--json"))
    assert as_json["text"] == text and as_json["url"] == shared_server.url


def test_snippet_mistakes_are_one_line(shared_server) -> None:
    fails(millpond(shared_server, "sources", "snippet", "no-such-source", "--sdk", "segment"),
          "no source 'no-such-source'")
    bad = millpond(shared_server, "sources", "snippet", "snip-web", "--sdk", "mixpanel")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_update_origins_enabled_and_name(shared_server, web) -> None:
    changed = json.loads(ok(shared_server, "sources", "update", "snip-web", "--allowed-origin",
                            "https://www.example.com", "--allowed-origin",
                            "https://*.example.com", "--not-replayable", "--json"))
    assert changed["allowed_origins"] == ["https://www.example.com", "https://*.example.com"]
    assert changed["replayable"] is False
    anyone = json.loads(ok(shared_server, "sources", "update", "snip-web", "--any-origin",
                           "--disable", "--json"))
    assert anyone["allowed_origins"] is None and anyone["enabled"] is False
    fails(millpond(shared_server, "sources", "update", "snip-web", "--allowed-origin",
                   "example.com"),
          "scheme and host")
    nothing = millpond(shared_server, "sources", "update", "snip-web")
    assert nothing.returncode == 2 and "nothing to change" in nothing.stderr
