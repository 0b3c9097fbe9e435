"""A small real HTTP server for vendor contract fakes.

Each vendor fake subclasses `FakeVendor` and implements `handle(request)`
following the vendor's documented contract (see its module docstring). The
base class owns what every fake shares:

- a stdlib `ThreadingHTTPServer` on 127.0.0.1 and a free port, in a daemon
  thread; `start()` returns once it accepts connections and `stop()` closes
  the listener *and* every open keep-alive connection, so a stopped fake is
  really gone (clients see connection errors, as with a real outage);
- gzip request bodies (`Content-Encoding: gzip`) and chunked uploads;
- knobs: `fail_next(n, status, retry_after=None)`, `delay_seconds`,
  `outage(on=True, status=503)`;
- accessors: `received` (accepted records in arrival order, one per dedupe
  key), `requests` (every raw request, failed ones too), `duplicates` (records
  dropped because their dedupe key was already stored);
- `wait_for(count)` for end-to-end tests that deliver asynchronously.

stdlib rather than uvicorn: no event loop to share with the code under test,
starts in milliseconds, and stops deterministically from any thread.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import socket
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class FakeRequest:
    """One request as the fake saw it (body already gunzipped)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    raw_body: bytes
    at: float = field(default_factory=time.time)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode("utf-8", errors="replace"), keep_blank_values=True)

    def query_one(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def basic_auth(self) -> tuple[str, str] | None:
        """(user, password) from `Authorization: Basic …`, else None."""
        value = self.header("authorization") or ""
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, sep, password = base64.b64decode(token, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return (user, password) if sep else None

    def path_segments(self) -> list[str]:
        return [unquote(part) for part in self.path.strip("/").split("/")]


@dataclass
class FakeResponse:
    """What the fake answers: dict/list bodies are sent as JSON, str as text."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> tuple[bytes, str]:
        if self.body is None:
            return b"", "text/plain"
        if isinstance(self.body, bytes):
            return self.body, "application/octet-stream"
        if isinstance(self.body, str):
            return self.body.encode(), "text/plain; charset=utf-8"
        return json.dumps(self.body).encode(), "application/json"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    fake: FakeVendor

    def handle_error(self, request, client_address) -> None:
        # A client that hangs up mid-request (a server SIGKILLed by a test) is expected;
        # anything else still prints its traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    # Answer at once: with Nagle's algorithm a small response waits ~40 ms for an ACK,
    # which would cap a one-request-at-a-time pump at ~25 requests/s.
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without NODELAY, Nagle plus
        # delayed ACKs add ~40 ms to every keep-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.fake._track_connection(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._track_connection(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        raw = self._read_body()
        headers = {name.lower(): value for name, value in self.headers.items()}
        response = self.server.fake._serve(self.command, self.path, headers, raw)
        body, content_type = response.encode()
        self.send_response(response.status)
        sent = {name.lower() for name in response.headers}
        for name, value in response.headers.items():
            self.send_header(name, value)
        if "content-type" not in sent:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _dispatch


class FakeVendor:
    """Base for vendor fakes; see the module docstring for what it provides."""

    #: Registry name, equal to the destination type it stands in for.
    name: ClassVar[str]

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._received: list[dict] = []
        self._keys: set[Hashable] = set()
        self._requests: list[FakeRequest] = []
        self._duplicates = 0
        self._failures: deque[FakeResponse] = deque()
        self._outage: int | None = None
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        #: Seconds to wait before answering each request (after recording it).
        self.delay_seconds = 0.0

    # lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-{self.name}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop open connections. Safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"fake {self.name} is not running")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:54321 (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    # knobs -------------------------------------------------------------------------------

    def fail_next(
        self,
        n: int = 1,
        status: int = 503,
        retry_after: float | str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next `n` requests with `status` (vendor-shaped body unless
        `body` is given) and, if set, `Retry-After: <retry_after>`."""
        extra = dict(headers or {})
        if retry_after is not None:
            value = retry_after if isinstance(retry_after, str) else f"{retry_after:g}"
            extra["Retry-After"] = value
        with self._lock:
            for _ in range(n):
                self._failures.append(FakeResponse(status, body, extra))

    def outage(self, on: bool = True, status: int = 503) -> None:
        """While on, every request gets `status` (vendor-shaped body)."""
        with self._lock:
            self._outage = status if on else None

    def reset(self) -> None:
        """Forget everything stored and every knob."""
        with self._lock:
            self._received.clear()
            self._keys.clear()
            self._requests.clear()
            self._duplicates = 0
            self._failures.clear()
            self._outage = None
            self.delay_seconds = 0.0
            self._reset_state()

    # accessors ---------------------------------------------------------------------------

    @property
    def received(self) -> list[dict]:
        """Accepted records in arrival order, one per dedupe key."""
        with self._lock:
            return list(self._received)

    @property
    def requests(self) -> list[FakeRequest]:
        """Every request received, including failed and rejected ones."""
        with self._lock:
            return list(self._requests)

    @property
    def duplicates(self) -> int:
        """Records not stored because their dedupe key was already stored."""
        with self._lock:
            return self._duplicates

    def wait_for(self, count: int, timeout: float = 30.0) -> list[dict]:
        """Wait until at least `count` records are stored; return them.
        Raises TimeoutError with what arrived so far."""
        deadline = time.monotonic() + timeout
        while True:
            received = self.received
            if len(received) >= count or time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        if len(received) < count:
            raise TimeoutError(
                f"fake {self.name}: {len(received)} of {count} records after {timeout}s"
            )
        return received

    # for subclasses ----------------------------------------------------------------------

    def destination_settings(self) -> dict:
        """Settings for the millpond destination type that point at this fake."""
        raise NotImplementedError

    def handle(self, request: FakeRequest) -> FakeResponse:
        """Answer one request that passed the failure knobs (vendor contract)."""
        raise NotImplementedError

    def failure_body(self, status: int) -> Any:
        """Body for injected failures; vendors override with documented shapes."""
        return {"error": f"injected failure {status}"}

    def failure_headers(self, status: int, headers: dict[str, str]) -> dict[str, str]:
        """Extra headers for injected failures (e.g. X-RateLimit-Reset)."""
        return headers

    def _reset_state(self) -> None:
        """Vendor-specific state to clear in `reset()`."""

    def store(self, key: Hashable | None, record: dict) -> bool:
        """Store `record` unless `key` was stored before (then count a duplicate).
        `key` None stores unconditionally. Call with the lock held or not."""
        with self._lock:
            if key is not None:
                if key in self._keys:
                    self._duplicates += 1
                    return False
                self._keys.add(key)
            self._received.append(record)
            return True

    # plumbing ----------------------------------------------------------------------------

    def _track_connection(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _serve(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> FakeResponse:
        parts = urlsplit(target)
        body = raw
        bad_gzip = False
        if (headers.get("content-encoding") or "").lower() == "gzip":
            try:
                body = gzip.decompress(raw)
            except (OSError, EOFError):
                bad_gzip = True
        request = FakeRequest(
            method, parts.path, parse_qs(parts.query, keep_blank_values=True), headers, body, raw
        )
        with self._lock:
            self._requests.append(request)
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        with self._lock:
            if self._outage is not None:
                status = self._outage
                failure = FakeResponse(status, self.failure_body(status), {})
            elif self._failures:
                failure = self._failures.popleft()
                status = failure.status
                if failure.body is None:
                    failure.body = self.failure_body(status)
            else:
                failure = None
        if failure is not None:
            failure.headers = self.failure_headers(failure.status, dict(failure.headers))
            return failure
        if bad_gzip:
            return FakeResponse(400, {"error": "invalid gzip body"})
        try:
            return self.handle(request)
        except Exception:  # a bug in the fake must show up in the test, not hang it
            return FakeResponse(500, "fake crashed:\n" + traceback.format_exc())
