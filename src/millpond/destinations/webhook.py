"""Webhook: POST each mapped payload as JSON to a URL the owner controls.

There is no vendor contract here, so millpond defines one (the fake in
`tests/destinations/fakes/webhook.py` checks it):
- `batch_size` 1: the body is one JSON object and `X-Millpond-Message-Id`
  carries the event's `messageId` so the receiver can deduplicate;
  `batch_size` > 1: the body is always a JSON array (even of one item), so a
  receiver sees one shape; dedupe on each payload's `messageId` (the preset
  passes the whole event through).
- With a `secret`, `X-Millpond-Signature: sha256=<hex HMAC-SHA256(secret, body)>`
  (the GitHub webhook convention) lets the receiver prove the body came from
  millpond and was not altered.
- Success is any 2xx; failures follow the shared retry table.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

import msgspec
from msgspec import Meta

from millpond.actions import ActionSpec, FieldSpec
from millpond.destinations.audiences import TRAITS, audience_preset
from millpond.destinations.base import (
    BatchLimits,
    DestinationType,
    Item,
    OutboundRequest,
    RateLimit,
)
from millpond.destinations.errors import SettingsError
from millpond.destinations.registry import register
from millpond.destinations.settings import check_http_url, mask_secret, show
from millpond.destinations.wire import json_bytes

SIGNATURE_HEADER = "X-Millpond-Signature"
MESSAGE_ID_HEADER = "X-Millpond-Message-Id"

#: Largest batch_size accepted; a receiver wanting more can raise max_bytes
#: pressure elsewhere, but 1000 keeps one request well under common proxy limits.
MAX_BATCH_SIZE = 1000

#: 1 MiB: nginx's default `client_max_body_size`, the most common limit in
#: front of a self-hosted receiver. Headroom of 4 KiB for the array brackets
#: and separators.
MAX_BODY_BYTES = 1024 * 1024 - 4096

#: Header names a user may not set: they are computed per request.
_RESERVED_HEADERS = {
    "content-length",
    "content-type",
    "host",
    "transfer-encoding",
    SIGNATURE_HEADER.lower(),
    MESSAGE_ID_HEADER.lower(),
}
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 field-name
_SENSITIVE_HEADER = re.compile(r"auth|token|key|secret|cookie|signature", re.IGNORECASE)


class WebhookSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    url: Annotated[
        str,
        Meta(
            description="Where to POST, an http or https URL.",
            examples=["https://example.com/hooks/millpond"],
        ),
    ]
    headers: Annotated[
        dict[str, str],
        Meta(description="Extra request headers, e.g. an Authorization header for the receiver."),
    ] = {}
    secret: Annotated[
        str | None,
        Meta(description="If set, each body is signed: X-Millpond-Signature: sha256=<hex HMAC>."),
    ] = None
    batch_size: Annotated[
        int,
        Meta(
            ge=1,
            le=MAX_BATCH_SIZE,
            description="1 sends one JSON object per POST; N > 1 sends JSON arrays of up to N.",
        ),
    ] = 1


def sign(secret: str, body: bytes) -> str:
    """The signature header value for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _when(path: str) -> dict:
    return {"@if": {"exists": {"@path": path}, "then": {"@path": path}}}


@register
class Webhook(DestinationType):
    """POST mapped events to any HTTP endpoint (JSON, optional HMAC signature)."""

    name = "webhook"
    title = "Webhook"
    docs = "https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries"
    settings_type = WebhookSettings
    settings_example: ClassVar[dict] = {
        "url": "https://example.com/hooks/millpond",
        "headers": {"Authorization": "Bearer example-token"},
        "secret": "whsec_0123456789abcdef",
        "batch_size": 1,
    }
    secret_fields = frozenset({"secret"})
    replayable = True
    # build_request only encodes payloads and reads the event's messageId.
    raw_payloads = True
    # No vendor limit: the receiver is the owner's own server. 100 events/s is
    # a cautious default for a small web app; owners raise it per destination.
    # 16 requests in flight: batch-1 requests reach 100/s even at 150 ms a round trip.
    default_rate_limit = RateLimit(events_per_second=100.0, max_in_flight=16)
    # Class-level value is for batch_size=1 (the default); instances narrow or
    # widen max_events to their batch_size.
    batching = BatchLimits(max_events=1, max_bytes=MAX_BODY_BYTES, linger_seconds=0.0)
    dedupe_key = "messageId (X-Millpond-Message-Id header; messageId in each payload)"
    presets = (
        ActionSpec(
            name="Send event",
            trigger="type != null",
            # `$.` is mapping-kit's root path: the whole stored event passes through.
            mapping={"@path": "$."},
            fields=(
                FieldSpec("messageId", description="Receivers dedupe on it (also a header)."),
                FieldSpec("type", description="Segment message type."),
            ),
        ),
        # A Segment identify: receivers that already take identify calls need nothing new.
        audience_preset(
            {"type": "identify", "userId": _when("$.userId"),
             "anonymousId": _when("$.anonymousId"), "timestamp": {"@path": "$.timestamp"},
             "messageId": {"@template": "{{messageId}}-trait"}, "traits": TRAITS},
            (FieldSpec("messageId", description="The Audience event's, suffixed `-trait`."),
             FieldSpec("traits", required=True, description="`<segment key>: true|false`.")),
        ),
    )

    settings: WebhookSettings

    def __init__(self, settings: msgspec.Struct) -> None:
        super().__init__(settings)
        #: The last payload `validate_item` measured, with its JSON (see `encode_payload`).
        self._validated: tuple[dict, bytes] | None = None
        size = self.settings.batch_size
        self.batching = BatchLimits(
            max_events=size, max_bytes=MAX_BODY_BYTES, linger_seconds=0.0 if size == 1 else 1.0
        )

    @classmethod
    def check_settings(cls, settings: msgspec.Struct) -> None:
        assert isinstance(settings, WebhookSettings)
        check_http_url("url", settings.url, cls.settings_example["url"])
        for name, value in settings.headers.items():
            if not _TOKEN.match(name):
                raise SettingsError(
                    "headers",
                    f"setting `headers`: {show(name)} is not a valid header name; "
                    'e.g. "headers": {"Authorization": "Bearer example-token"}',
                )
            if name.lower() in _RESERVED_HEADERS:
                raise SettingsError(
                    "headers",
                    f"setting `headers`: `{name}` is set by millpond and cannot be overridden; "
                    'e.g. "headers": {"Authorization": "Bearer example-token"}',
                )
            if "\r" in value or "\n" in value:
                raise SettingsError(
                    "headers",
                    f"setting `headers`: the value of `{name}` must not contain line breaks; "
                    f"got {show(value)}",
                )
        if settings.secret is not None and len(settings.secret) < 16:
            raise SettingsError(
                "secret",
                "setting `secret` must be at least 16 characters so signatures resist guessing, "
                f'e.g. "secret": "whsec_0123456789abcdef"; got {len(settings.secret)} characters',
            )

    @classmethod
    def mask_settings(cls, raw: dict) -> dict:
        """Also masks header values that look like credentials (Authorization,
        X-Api-Key, ...): they are secrets even though they live in `headers`."""
        masked = super().mask_settings(raw)
        headers = masked.get("headers")
        if isinstance(headers, Mapping):
            masked["headers"] = {
                key: mask_secret(value) if _SENSITIVE_HEADER.search(str(key)) else value
                for key, value in headers.items()
            }
        return masked

    def validate_item(self, action: str, payload: dict[str, Any]) -> str | None:
        body = json_bytes(payload)
        self._validated = (payload, body)
        if len(body) > MAX_BODY_BYTES:
            return f"payload is larger than {MAX_BODY_BYTES} bytes, the webhook body limit"
        return None

    def encode_payload(self, payload: dict[str, Any]) -> bytes:
        """Reuses the encoding `validate_item` made to measure this very payload.

        Why: the pump packs each payload right after evaluation validated it, and
        encoding it twice was a tenth of a replay's time. Safe because the payload is
        matched by identity (the pair holds it, so the id cannot be reused) and nothing
        changes a fresh mapping output between its validation and its packing."""
        validated = self._validated
        if validated is not None and validated[0] is payload:
            return validated[1]
        return json_bytes(payload)

    def build_request(self, action: str, items: list[Item]) -> OutboundRequest:
        settings = self.settings
        # A batch_size=1 destination handed several items (a pump bug) still
        # sends all of them, as an array, rather than dropping any.
        single = settings.batch_size == 1 and len(items) == 1
        body = json_bytes(items[0].payload if single else [item.payload for item in items])
        headers = {**settings.headers, "Content-Type": "application/json"}
        if single:
            message_id = items[0].event.get("messageId")
            if isinstance(message_id, str):
                headers[MESSAGE_ID_HEADER] = message_id
        if settings.secret:
            headers[SIGNATURE_HEADER] = sign(settings.secret, body)
        return OutboundRequest("POST", settings.url, headers, body, len(items))
