"""The browser-test harness: a page server on a second loopback origin, Chromium, a network log.

Why each piece is the way it is:

* The pages must come from **another origin** than millpond, as on a real site: that is what
  makes the browser enforce CORS (preflights, readable answers). ``PageServer`` listens on its
  own port of 127.0.0.1, so ``http://127.0.0.1:<pages>`` and ``http://127.0.0.1:<millpond>``
  are two origins.
* It serves the SDKs' UMD builds straight from ``tests/sdk/node/node_modules`` (installed from
  the pinned ``package.json``), the way a user self-hosts them, and one page per SDK whose
  mode, write key and collector URL it fills in at request time.
* Chromium is Debian's, driven through ``executable_path``: Playwright's browser download
  cannot work on machines that reach only the package registries.
* Requests to any host but loopback are blocked by pointing the browser's proxy at a closed
  local port (loopback is never proxied). ``page.route`` would be the obvious tool, but with
  any route installed Playwright answers every CORS preflight itself with allow-everything
  headers, which would hide exactly the collector CORS bugs these tests exist to catch.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, Request, Response

HERE = Path(__file__).parent
PAGES_DIR = HERE / "pages"
NODE_MODULES = HERE.parent / "node" / "node_modules"

SDKS = ("segment", "customerio", "rudderstack")
MODES = ("standard", "batching")

# Small batches so that a test's four calls leave in one request, at once or soon after.
BATCH = {"size": 4, "timeout": 500}

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    # Without these Chromium phones Google at start-up (and gets refused here).
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def chromium_path() -> str:
    """Debian's chromium; a missing one is a failure, since ``make test`` installs it."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise RuntimeError("chromium is not installed: `make test` installs Debian's chromium "
                           "(apt-get install chromium)")
    return path


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class _Handler(BaseHTTPRequestHandler):
    """``/{sdk}-{mode}.html?writeKey=…``, ``/blank.html``, pages a test added, and
    ``/node_modules/…`` (GET only)."""

    server: _PageHTTPServer
    protocol_version = "HTTP/1.1"
    PAGE = re.compile(r"^/(?P<sdk>[a-z]+)-(?P<mode>[a-z]+)\.html$")

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path, _, query = self.path.partition("?")
        params = dict(p.partition("=")[::2] for p in query.split("&") if p)
        if path in self.server.added_pages:
            self._send(200, "text/html; charset=utf-8", self.server.added_pages[path].encode())
        elif path == "/blank.html":
            self._send(200, "text/html; charset=utf-8", (PAGES_DIR / "blank.html").read_bytes())
        elif match := self.PAGE.match(path):
            self._page(match["sdk"], match["mode"], params.get("writeKey", ""))
        elif path.startswith("/node_modules/"):
            self._node_module(path[len("/node_modules/"):])
        else:
            self._send(404, "text/plain", b"not found")

    def _page(self, sdk: str, mode: str, write_key: str) -> None:
        if sdk not in SDKS or mode not in MODES or not re.fullmatch(r"[\w-]+", write_key):
            self._send(404, "text/plain", b"no such page")
            return
        collector = self.server.collector_url
        config = {"writeKey": write_key, "collector": collector,
                  "collectorHost": urlsplit(collector).netloc,
                  "batch": BATCH if mode == "batching" else None}
        html = (PAGES_DIR / f"{sdk}.html").read_text()
        self._send(200, "text/html; charset=utf-8",
                   html.replace("/*CONFIG*/", json.dumps(config)).encode())

    def _node_module(self, rel: str) -> None:
        file = (NODE_MODULES / rel).resolve()
        if not file.is_relative_to(NODE_MODULES.resolve()) or not file.is_file():
            self._send(404, "text/plain", b"not found")
            return
        kind = "text/javascript" if file.suffix in (".js", ".mjs") else "application/octet-stream"
        self._send(200, kind, file.read_bytes())

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (signature of the base)
        pass


class _PageHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    collector_url: str
    added_pages: dict[str, str]


class PageServer:
    """The test site: a static HTTP server on its own loopback port, in a thread."""

    def __init__(self, collector_url: str):
        self._httpd = _PageHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.collector_url = collector_url
        self._httpd.added_pages = {}
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        name="page-server")

    def start(self) -> PageServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def sdk_page(self, sdk: str, mode: str, write_key: str) -> str:
        return f"{self.url}/{sdk}-{mode}.html?writeKey={write_key}"

    def add_page(self, path: str, html: str) -> str:
        """Serve ``html`` at ``path`` (which starts with ``/``); returns its URL."""
        self._httpd.added_pages[path] = html
        return self.url + path


class ClosedPort:
    """A loopback port bound but never listening: connections to it are refused at once.

    The browser's proxy points here, so anything not on loopback fails without leaving the
    machine (and without waiting for a DNS or connect timeout).
    """

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]

    def close(self) -> None:
        self._sock.close()


def launch_chromium(playwright: Playwright, closed_port: int) -> Browser:
    return playwright.chromium.launch(
        executable_path=chromium_path(), headless=True,
        args=[*CHROMIUM_ARGS, f"--proxy-server=http://127.0.0.1:{closed_port}"])


@dataclass
class Seen:
    """One request the page made, and what became of it."""

    method: str
    url: str
    resource_type: str
    status: int | None = None
    failure: str | None = None
    done: bool = False

    def __str__(self) -> str:
        outcome = self.failure or (str(self.status) if self.status is not None else "pending")
        return f"{self.method} {self.url} [{self.resource_type}] -> {outcome}"


@dataclass
class NetworkLog:
    """Every request, answer, failure, console message and uncaught error of one page."""

    requests: list[Seen] = field(default_factory=list)
    console: list[ConsoleMessage] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    _by_request: dict[Request, Seen] = field(default_factory=dict)
    last_activity: float = field(default_factory=time.monotonic)

    def attach(self, page: Page) -> None:
        page.on("request", self._on_request)
        page.on("response", self._on_response)
        page.on("requestfinished", self._on_finished)
        page.on("requestfailed", self._on_failed)
        page.on("console", lambda message: self.console.append(message))
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))

    def _on_request(self, request: Request) -> None:
        seen = Seen(request.method, request.url, request.resource_type)
        self._by_request[request] = seen
        self.requests.append(seen)
        self.last_activity = time.monotonic()

    def _on_response(self, response: Response) -> None:
        if seen := self._by_request.get(response.request):
            seen.status = response.status
        self.last_activity = time.monotonic()

    def _on_finished(self, request: Request) -> None:
        if seen := self._by_request.get(request):
            seen.done = True
        self.last_activity = time.monotonic()

    def _on_failed(self, request: Request) -> None:
        if seen := self._by_request.get(request):
            seen.failure = request.failure or "failed"
            seen.done = True
        self.last_activity = time.monotonic()

    def pending(self) -> list[Seen]:
        return [s for s in self.requests if not s.done]

    def posts(self, collector: str) -> list[str]:
        """Paths of the POSTs that went to the collector, in order."""
        return [urlsplit(s.url).path for s in self.requests
                if s.method == "POST" and origin(s.url) == collector]

    def wait_for_posts(self, page: Page, collector: str, paths: set[str],
                       timeout: float = 15.0) -> None:
        """Until POSTs to every one of ``paths`` have shown, or ``timeout``: the collector
        can store events before Playwright hands us the page's request events (a loaded CI
        machine read none). No failure here: the caller compares the exact set."""
        deadline = time.monotonic() + timeout
        while not paths <= set(self.posts(collector)) and time.monotonic() < deadline:
            page.wait_for_timeout(50)

    def console_errors(self) -> list[str]:
        return [f"{m.type}: {m.text}" for m in self.console if m.type == "error"]

    def report(self) -> str:
        """All of it, for an assertion message."""
        lines = ["requests:", *(f"  {s}" for s in self.requests), "console:",
                 *(f"  {m.type}: {m.text}" for m in self.console), "page errors:",
                 *(f"  {e}" for e in self.page_errors)]
        return "\n".join(lines)

    def wait_idle(self, page: Page, quiet: float = 0.4, timeout: float = 10.0) -> None:
        """Until nothing is in flight and nothing new started for ``quiet`` seconds.

        Playwright delivers its events while the page is driven, hence ``wait_for_timeout``
        (a short pump of the event loop) rather than ``time.sleep``.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.pending() and time.monotonic() - self.last_activity >= quiet:
                return
            page.wait_for_timeout(50)
        raise AssertionError(f"page still busy after {timeout}s\n{self.report()}")

    def problems(self, allowed_origins: set[str] | None = None) -> list[str]:
        """Failed requests, answers >= 400, console errors (a CORS refusal is one), uncaught
        errors and, given ``allowed_origins``, requests to any other origin."""
        found: list[str] = []
        for seen in self.requests:
            if seen.url.startswith("data:"):
                continue
            if allowed_origins is not None and origin(seen.url) not in allowed_origins:
                found.append(f"request to a third host: {seen}")
            elif seen.failure:
                found.append(f"failed request: {seen}")
            elif seen.status is not None and seen.status >= 400:
                found.append(f"error answer: {seen}")
        found += [f"console {e}" for e in self.console_errors()]
        found += [f"page error: {e}" for e in self.page_errors]
        return found

    def assert_clean(self, allowed_origins: set[str]) -> None:
        """No request left the two test servers, none failed or got >= 400, no console error."""
        problems = self.problems(allowed_origins)
        assert not problems, "\n".join(problems) + "\n\n" + self.report()


def wait_sdk_ready(page: Page, log: NetworkLog, what: str, timeout: float = 15.0) -> None:
    """Until the page's ``window.sdkState`` is ``'ready'``; fail at once on a load failure or
    a console error (RudderStack only logs a config it cannot fetch, and never loads)."""
    deadline = time.monotonic() + timeout
    while True:
        state = page.evaluate("() => window.sdkState")
        if state == "ready":
            return
        if state != "loading" or log.console_errors() or time.monotonic() > deadline:
            raise AssertionError(f"{what} did not load (state: {state})\n{log.report()}")
        page.wait_for_timeout(50)


def poll(fetch: Callable[[], list[dict]], done: Callable[[list[dict]], bool], timeout: float,
         what: str, page: Page | None = None, log: NetworkLog | None = None) -> list[dict]:
    """Call ``fetch`` until ``done`` holds for its result, or fail after ``timeout`` seconds.

    With a ``page``, waiting also pumps Playwright's event loop so the network log stays live;
    with its ``log``, a failed request or console error fails at once instead of at the
    deadline (an SDK whose request was refused retries with backoff, for minutes).
    """
    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if done(result):
            return result
        if log is not None and (problems := log.problems()):
            raise AssertionError(f"while waiting for {what}:\n" + "\n".join(problems)
                                 + "\n\n" + log.report())
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {result}"
                                 + (f"\n{log.report()}" if log is not None else ""))
        if page is not None:
            page.wait_for_timeout(100)
        else:
            time.sleep(0.1)
