"""Fixtures for the console's browser tests: one real ``millpond serve`` and one Debian
Chromium per module (the SDK tests' harness), a signed-in page per test, screenshots.

Screenshots are taken by the tests at 1280x800. ``make screenshots`` runs them with
``MILLPOND_SCREENSHOTS`` set to ``docs/screenshots/`` (the README shows them); otherwise
they go to a temporary directory, so ``make test`` leaves the checkout as it found it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.sdk.browser.harness import ClosedPort, NetworkLog, launch_chromium
from tests.support.server import ADMIN_TOKEN, ServerProcess

_TEMPORARY = Path(tempfile.mkdtemp(prefix="millpond-screenshots-"))
atexit.register(shutil.rmtree, _TEMPORARY, True)
# Taken out of the environment: the servers the tests start refuse unknown MILLPOND_*
# variables (a typo in a deployment's must not pass silently).
SCREENSHOTS = Path(os.environ.pop("MILLPOND_SCREENSHOTS", "") or _TEMPORARY)
VIEWPORT = {"width": 1280, "height": 800}


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    closed = ClosedPort()
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright, closed.port)
        yield browser
        browser.close()
    closed.close()


@dataclass
class Console:
    """A signed-in console page on the module's server."""

    page: Page
    log: NetworkLog
    server: ServerProcess

    @property
    def base(self) -> str:
        return self.server.url + "/console"

    def go(self, path: str) -> Page:
        self.page.goto(self.base + path)
        return self.page

    def nav(self, name: str) -> Page:
        self.page.get_by_role("navigation", name="Main").get_by_role("link", name=name,
                                                                     exact=True).click()
        return self.page

    def screenshot(self, name: str, full_page: bool = False) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)

    def problems(self) -> list[str]:
        """Console errors and uncaught errors of the page so far (a Content-Security-Policy
        violation is a console error), and assets that failed to load. Chromium also logs
        every 4xx page as an error; forms answer 4xx on purpose, so those are left out."""
        errors = [e for e in self.log.console_errors() if "Failed to load resource" not in e]
        assets = [str(s) for s in self.log.requests if "/static/" in s.url
                  and (s.failure or (s.status or 200) >= 400)]
        return errors + self.log.page_errors + assets


def sign_in(page: Page, server: ServerProcess, token: str = ADMIN_TOKEN) -> None:
    page.goto(server.url + "/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Admin token").fill(token)
    page.get_by_role("button", name="Sign in").click()


@pytest.fixture
def console(chromium, shared_server) -> Iterator[Console]:
    context = chromium.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(15_000)
    log = NetworkLog()
    log.attach(page)
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, shared_server)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    yield Console(page, log, shared_server)
    context.close()
