"""Fixtures for the browser tests: one millpond, one page server and one Chromium per module.

Each test gets a fresh browser context (so no cookies or localStorage queues leak between
tests) with one page whose every request and console message is recorded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.sdk.browser.harness import ClosedPort, NetworkLog, PageServer, launch_chromium
from tests.support.server import ServerProcess


@pytest.fixture(scope="module")
def collector(shared_server) -> ServerProcess:
    """The module's real ``millpond serve`` on 127.0.0.1:<port>: the origin the SDKs send to."""
    return shared_server


@pytest.fixture(scope="module")
def page_server(collector) -> Iterator[PageServer]:
    """The test site, on another port of 127.0.0.1, hence another origin than ``collector``."""
    server = PageServer(collector.url).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    closed = ClosedPort()
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright, closed.port)
        yield browser
        browser.close()
    closed.close()


@dataclass
class BrowserPage:
    page: Page
    log: NetworkLog


@pytest.fixture
def browser_page(chromium) -> Iterator[BrowserPage]:
    context = chromium.new_context()
    page = context.new_page()
    log = NetworkLog()
    log.attach(page)
    yield BrowserPage(page, log)
    context.close()
