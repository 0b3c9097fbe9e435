"""``/api/docs`` works offline: every asset comes from this server, and the page can send
the admin token (a declared bearer scheme).

The browser's proxy points at a closed loopback port, so a request to any other host
fails at once and shows up in the network log (tests/sdk/browser/harness.py).
"""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from playwright.sync_api import sync_playwright

from tests.sdk.browser.harness import ClosedPort, NetworkLog, launch_chromium
from tests.support.server import ADMIN_TOKEN

pytestmark = pytest.mark.slow


def test_every_asset_the_page_references_is_served_here(shared_server):
    page = httpx.get(f"{shared_server.url}/api/docs")
    assert page.status_code == 200
    refs = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", page.text)
    assert len(refs) >= 4, refs  # script, stylesheet, favicon, the OpenAPI document
    for ref in refs:
        url = urljoin(f"{shared_server.url}/api/docs", ref)
        assert urlsplit(url).netloc == urlsplit(shared_server.url).netloc, ref
        assert httpx.get(url).status_code == 200, url
    assert "cdn" not in page.text.lower()


def test_the_docs_page_renders_offline_and_sends_the_admin_token(shared_server):
    closed = ClosedPort()
    log = NetworkLog()
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright, closed.port)
        try:
            page = browser.new_page()
            log.attach(page)
            page.goto(f"{shared_server.url}/api/docs")
            page.wait_for_selector("#operations-sources-list_sources_api_sources_get",
                                   timeout=30_000)
            # Authorize with the admin token, then try GET /api/sources from the page.
            page.click("button.authorize")
            page.fill(".auth-container input", ADMIN_TOKEN)
            page.click(".auth-btn-wrapper button.authorize")
            page.click(".btn-done")
            operation = page.locator("#operations-sources-list_sources_api_sources_get")
            operation.locator(".opblock-summary").click()
            operation.locator("button.try-out__btn").click()
            with page.expect_response(lambda r: r.url.endswith("/api/sources")) as answer:
                operation.locator("button.execute").click()
            assert answer.value.status == 200
            assert answer.value.request.headers["authorization"] == f"Bearer {ADMIN_TOKEN}"
        finally:
            browser.close()
            closed.close()
    elsewhere = [str(r) for r in log.requests if not r.url.startswith(shared_server.url)
                 and not r.url.startswith("data:")]
    assert not elsewhere, elsewhere
    assert not log.page_errors, log.page_errors
    failed = [str(r) for r in log.requests if r.failure or (r.status or 200) >= 400]
    assert not failed, failed
