"""Fake Segment-compatible HTTP Tracking API.

Follows vendors.md §5 "Segment-compatible HTTP Tracking API"
(https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/,
segmentio/segment-docs `…/http-api/index.md`; analytics-python `request.py`):
- `POST /v1/batch` (and `/v1/import`) plus the single-message paths
  `/v1/identify|track|page|screen|group|alias`;
- auth: Basic `<writeKey>:`, `writeKey` in the body, or Bearer + `writeKey`
  in the body; 401 without (real status for a bad key is unconfirmed; 401);
- JSON only; 400 for invalid JSON, a message over 32 KB or a batch over 500 KB
  (`500_000` bytes: the stricter reading of "500 KB");
- more than 2500 messages: 200 but the batch is dropped (`rejected_batches`);
- messages without `userId`/`anonymousId`, or a track without `event`: 200 and
  dropped (`dropped`);
- batch-level `context`/`integrations` merge into each message (the message's
  own keys win); a missing `messageId` is assigned; dedupe by `messageId`;
- injected 429s carry `Retry-After` and `X-RateLimit-Reset`.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from .base import FakeRequest, FakeResponse, FakeVendor

SINGLE = ("identify", "track", "page", "screen", "group", "alias")
MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500_000
MAX_BATCH_MESSAGES = 2500


class FakeSegment(FakeVendor):
    name = "segment"

    def __init__(self, write_key: str = "wk_fake_0123456789") -> None:
        super().__init__()
        self.write_key = write_key
        self.dropped: list[tuple[str, dict]] = []
        self.rejected_batches = 0

    def _reset_state(self) -> None:
        self.dropped.clear()
        self.rejected_batches = 0

    def destination_settings(self) -> dict:
        return {"endpoint": self.url, "write_key": self.write_key}

    def failure_body(self, status: int) -> Any:
        return {"code": "injected", "message": f"injected failure {status}"}

    def failure_headers(self, status: int, headers: dict[str, str]) -> dict[str, str]:
        if status == 429 and "Retry-After" in headers:
            headers.setdefault("X-RateLimit-Reset", headers["Retry-After"])
        return headers

    def _write_key(self, request: FakeRequest, body: dict) -> str | None:
        auth = request.basic_auth()
        if auth is not None:
            return auth[0]
        key = body.get("writeKey")
        return key if isinstance(key, str) else None

    def handle(self, request: FakeRequest) -> FakeResponse:
        parts = request.path_segments()
        if request.method != "POST" or len(parts) != 2 or parts[0] != "v1":
            return FakeResponse(404, {"code": "not_found", "message": request.path})
        kind = parts[1]
        if kind not in (*SINGLE, "batch", "import"):
            return FakeResponse(404, {"code": "not_found", "message": request.path})
        if "application/json" not in (request.header("content-type") or ""):
            return FakeResponse(400, {"code": "invalid_request", "message": "JSON required"})
        try:
            body = request.json()
        except ValueError:
            return FakeResponse(400, {"code": "invalid_request", "message": "Invalid JSON"})
        if not isinstance(body, dict):
            return FakeResponse(400, {"code": "invalid_request", "message": "object required"})
        if self._write_key(request, body) != self.write_key:
            # Basic (a) or Bearer (c): both need the right write key somewhere.
            return FakeResponse(401, {"code": "unauthorized", "message": "invalid write key"})
        if kind in SINGLE:
            if len(request.body) > MAX_MESSAGE_BYTES:
                return FakeResponse(400, {"code": "too_large", "message": "message > 32KB"})
            messages = [{**body, "type": kind}]
            envelope: dict = {}
        else:
            if len(request.body) > MAX_BATCH_BYTES:
                return FakeResponse(400, {"code": "too_large", "message": "batch > 500KB"})
            messages = body.get("batch")
            if not isinstance(messages, list):
                return FakeResponse(400, {"code": "invalid_request", "message": "batch required"})
            for message in messages:
                if len(_encode(message)) > MAX_MESSAGE_BYTES:
                    return FakeResponse(400, {"code": "too_large", "message": "message > 32KB"})
            if len(messages) > MAX_BATCH_MESSAGES:
                with self._lock:
                    self.rejected_batches += 1
                return FakeResponse(200, {"success": True})
            envelope = body
        for message in messages:
            self._accept(message, envelope)
        return FakeResponse(200, {"success": True})

    def _accept(self, message: Any, envelope: dict) -> None:
        if not isinstance(message, dict):
            self.dropped.append(("not an object", {"value": message}))
            return
        record = dict(message)
        for key in ("context", "integrations"):
            if isinstance(envelope.get(key), dict):
                record[key] = {**envelope[key], **(record.get(key) or {})}
        if record.get("userId") in (None, "") and record.get("anonymousId") in (None, ""):
            with self._lock:
                self.dropped.append(("no_user_anon_id", record))
            return
        if record.get("type") == "track" and not record.get("event"):
            with self._lock:
                self.dropped.append(("missing event", record))
            return
        record.setdefault("messageId", f"api-{uuid.uuid4()}")
        self.store(("messageId", record["messageId"]), record)


def _encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def basic(write_key: str) -> str:
    """`Authorization` value a Segment client sends."""
    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
