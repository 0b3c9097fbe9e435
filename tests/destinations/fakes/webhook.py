"""Fake webhook receiver: millpond's own webhook contract.

Follows the contract stated in `millpond/destinations/webhook.py` (there is no
vendor; the HMAC header follows GitHub's convention,
https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries):
- POST JSON: one object (with `X-Millpond-Message-Id`) or an array of objects;
- with a secret, `X-Millpond-Signature: sha256=<hex HMAC-SHA256(secret, body)>`
  is verified *independently of millpond's code* → 401 if absent or wrong;
- dedupe on `X-Millpond-Message-Id` (single) or each payload's `messageId`;
- `max_events` (optional) → 413 for larger arrays; non-JSON → 400.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from .base import FakeRequest, FakeResponse, FakeVendor

PATH = "/hooks/millpond"


class FakeWebhook(FakeVendor):
    name = "webhook"

    def __init__(
        self, secret: str | None = None, batch_size: int = 1, max_events: int | None = None
    ) -> None:
        super().__init__()
        self.secret = secret
        self.batch_size = batch_size
        self.max_events = max_events

    def destination_settings(self) -> dict:
        settings: dict[str, Any] = {"url": self.url + PATH, "batch_size": self.batch_size}
        if self.secret:
            settings["secret"] = self.secret
        return settings

    def handle(self, request: FakeRequest) -> FakeResponse:
        if request.method != "POST":
            return FakeResponse(405, {"error": "POST only"})
        if request.path != PATH:
            return FakeResponse(404, {"error": f"no such hook {request.path}"})
        if not (request.header("content-type") or "").startswith("application/json"):
            return FakeResponse(415, {"error": "Content-Type must be application/json"})
        if self.secret is not None:
            expected = (
                "sha256="
                + hmac.new(self.secret.encode(), request.raw_body, hashlib.sha256).hexdigest()
            )
            if not hmac.compare_digest(request.header("x-millpond-signature") or "", expected):
                return FakeResponse(401, {"error": "bad or missing X-Millpond-Signature"})
        try:
            data = request.json()
        except ValueError:
            return FakeResponse(400, {"error": "body is not JSON"})
        if isinstance(data, list):
            if self.max_events is not None and len(data) > self.max_events:
                return FakeResponse(413, {"error": f"more than {self.max_events} events"})
            payloads, header_id = data, None
        elif isinstance(data, dict):
            payloads, header_id = [data], request.header("x-millpond-message-id")
        else:
            return FakeResponse(400, {"error": "body must be an object or an array"})
        stored = 0
        for payload in payloads:
            key = header_id or (payload.get("messageId") if isinstance(payload, dict) else None)
            stored += self.store(key, payload)
        return FakeResponse(200, {"accepted": stored, "duplicates": len(payloads) - stored})


def signature(secret: str, body: bytes) -> str:
    """What a receiver computes (for tests that sign by hand)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
