"""Fakes for backfill tests: an in-memory sink and a real loopback ``/v1/import`` server.

The fixtures that start them are in ``conftest.py``. The fake collector follows the
contract the import relies on: Basic auth with the write key, gzip bodies,
``{"batch": [...]}`` in, ``{"success", "accepted", "duplicates", "rejected": [{"index",
"code", "reason", "field"}]}`` out, dedupe by messageId, 429/503 with ``Retry-After`` when
told to throttle, and the admin API's ``GET /api/sources/{name}`` for the CLI.
"""

from __future__ import annotations

import base64
import gzip
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from millpond.backfill import SinkResult
from tests.support.server import ADMIN_TOKEN

WRITE_KEY = "wk_import"


class ListSink:
    """Collects every event it acknowledges (a real list) and can fail on purpose.

    ``fail_on_batch=n`` raises on the n-th call *before* storing (an unacknowledged
    batch); ``lose_ack_on_batch=n`` stores the n-th batch and then raises (the
    acknowledgement got lost on the way back). Stored messageIds are deduped like the
    server does, so duplicates are counted, not stored twice.
    """

    def __init__(self, fail_on_batch: int | None = None, lose_ack_on_batch: int | None = None,
                 reject: Callable[[dict], str | None] | None = None):
        self.events: list[dict[str, Any]] = []
        self.ids: set[str] = set()
        self.batches: list[int] = []
        self.calls = 0
        self.fail_on_batch = fail_on_batch
        self.lose_ack_on_batch = lose_ack_on_batch
        self.reject = reject

    def send(self, events: list[dict[str, Any]]) -> SinkResult:
        self.calls += 1
        if self.calls == self.fail_on_batch:
            raise ConnectionError("sink went away")
        accepted, duplicates, rejected = 0, 0, []
        for index, event in enumerate(events):
            reason = self.reject(event) if self.reject else None
            if reason:
                rejected.append((index, reason))
            elif event["messageId"] in self.ids:
                duplicates += 1
            else:
                self.ids.add(event["messageId"])
                self.events.append(json.loads(json.dumps(event)))
                accepted += 1
        self.batches.append(len(events))
        if self.calls == self.lose_ack_on_batch:
            raise TimeoutError("acknowledgement lost")
        return SinkResult(accepted, rejected, duplicates)


def read_report(path: str | Path) -> list[dict[str, str]]:
    import csv

    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@dataclass
class FakeCollector:
    """State of the loopback server; tests tweak the knobs and read what it stored."""

    url: str = ""
    stored: dict[str, dict] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    throttle_next: list[tuple[int, str]] = field(default_factory=list)
    fail_status: int | None = None
    max_batch_events: int | None = None
    sources: dict[str, dict] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def stored_ids(self) -> set[str]:
        return set(self.stored)


def collector_handler(state: FakeCollector) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(raw)

        def _error(self, status: int, code: str, message: str, **headers: str) -> None:
            self._reply(status, {"error": {"code": code, "message": message}}, headers)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.headers.get("Authorization") != f"Bearer {ADMIN_TOKEN}":
                return self._error(401, "unauthorized", "bad admin token")
            prefix = "/api/sources/"
            name = self.path[len(prefix):] if self.path.startswith(prefix) else None
            if name not in state.sources:
                return self._error(404, "not_found", f"no source {name!r}")
            self._reply(200, state.sources[name])

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path != "/v1/import":
                return self._error(404, "not_found", "no such endpoint")
            auth = self.headers.get("Authorization", "")
            user = base64.b64decode(auth.removeprefix("Basic ")).decode().split(":")[0]
            if user != WRITE_KEY:
                return self._error(401, "unauthorized", "unknown write key")
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            batch = json.loads(body)["batch"]
            with state.lock:
                state.requests.append({"events": len(batch),
                                       "gzip": self.headers.get("Content-Encoding") == "gzip",
                                       "content_type": self.headers.get("Content-Type")})
                if state.throttle_next:
                    status, retry_after = state.throttle_next.pop(0)
                    return self._error(status, "overloaded", "slow down", **{
                        "Retry-After": retry_after})
                if state.fail_status:
                    return self._error(state.fail_status, "bad_request", "the batch is wrong")
                if state.max_batch_events and len(batch) > state.max_batch_events:
                    return self._error(413, "too_large", "batch too large")
                accepted = duplicates = 0
                rejected = []
                for index, msg in enumerate(batch):
                    if not (msg.get("userId") or msg.get("anonymousId")):
                        rejected.append({"index": index, "code": "missing_identity",
                                         "reason": "userId or anonymousId is required",
                                         "field": "userId"})
                    elif msg.get("traits", {}).get("server_rejects"):
                        rejected.append({"index": index, "code": "invalid_field",
                                         "reason": "the server says no", "field": "traits"})
                    elif msg["messageId"] in state.stored:
                        duplicates += 1
                    else:
                        state.stored[msg["messageId"]] = msg
                        accepted += 1
            self._reply(200, {"success": True, "accepted": accepted, "duplicates": duplicates,
                              "rejected": rejected})

    return Handler
