"""Segment (or any Segment-compatible tracking API): forward events unchanged.

Contract: vendors.md §5 "Segment-compatible HTTP Tracking API" (segment-docs
`…/http-api/index.md`; analytics-python `request.py`, `consumer.py`).
- `POST {endpoint}/v1/batch`, `{"batch": [...], "sentAt": ISO}`, HTTP Basic
  with the write key as user name and an empty password, JSON body.
- 32 KB per message, 500 KB per batch, at most 2500 messages (over 2500 the API
  answers 200 and drops the batch, so the limit must hold *before* sending).
- `messageId` is Segment's only dedupe key (≥24 h lookback), so the preset
  keeps it, as it keeps `timestamp`, ids and everything else that matters.
- Messages without `userId`/`anonymousId` (or a track without `event`) are
  dropped with a 200; `validate_item` dead-letters them instead, with a reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

import msgspec
from msgspec import Meta

from millpond.actions import ActionSpec, FieldSpec
from millpond.destinations.base import (
    BatchLimits,
    DestinationType,
    Item,
    OutboundRequest,
    Outcome,
    RateLimit,
    Reject,
    Retry,
    Sent,
    body_text,
    json_detail,
    retry_after_seconds,
)
from millpond.destinations.registry import register
from millpond.destinations.settings import check_http_url, check_not_blank
from millpond.destinations.wire import basic_auth, json_bytes, utc_now_iso

#: analytics-python MAX_MSG_SIZE (32 << 10); the API's documented 32 KB.
MAX_MESSAGE_BYTES = 32 * 1024
#: analytics-python BATCH_SIZE_LIMIT: 475,000 bytes, headroom under 500 KB for the envelope.
MAX_BATCH_BYTES = 475_000
MAX_BATCH_EVENTS = 2500
#: analytics-python caps a server's Retry-After at 300 s.
MAX_RETRY_AFTER = 300.0

MESSAGE_TYPES = ("identify", "track", "page", "screen", "group", "alias")
#: Segment-spec fields forwarded; millpond's own (`seq`, `source_id`,
#: `received_at`) stay home, and `sentAt` is set per batch by the envelope.
FORWARDED_FIELDS = (
    "type",
    "messageId",
    "timestamp",
    "originalTimestamp",
    "userId",
    "anonymousId",
    "event",
    "name",
    "category",
    "properties",
    "traits",
    "groupId",
    "previousId",
    "context",
    "integrations",
)


class SegmentSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    write_key: Annotated[
        str, Meta(description="Write key of the receiving source (sent as the Basic user name).")
    ]
    endpoint: Annotated[
        str,
        Meta(
            description="Base URL of the Segment-compatible tracking API; /v1/batch is appended. "
            "EU workspaces: https://events.eu1.segmentapis.com",
        ),
    ] = "https://api.segment.io"


def batch_url(endpoint: str) -> str:
    """`{endpoint}/v1/batch`, accepting endpoints given with or without `/v1`."""
    base = endpoint.rstrip("/")
    return f"{base}/batch" if base.endswith("/v1") else f"{base}/v1/batch"


@register
class Segment(DestinationType):
    """Forward events to a Segment-compatible tracking API's batch endpoint."""

    name = "segment"
    title = "Segment (HTTP Tracking API)"
    docs = "https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/"
    settings_type = SegmentSettings
    settings_example: ClassVar[dict] = {
        "endpoint": "https://api.segment.io",
        "write_key": "wk_0123456789abcdef",
    }
    secret_fields = frozenset({"write_key"})
    replayable = True
    # vendors.md §5: "Recommended ≤1000 req/s per workspace". millpond also holds
    # events to 1000/s by default: the target may be a smaller self-hosted
    # Segment-compatible collector. Owners raise it per destination.
    # 8 in flight: 50 requests/s of 20 events at ~200 ms each.
    default_rate_limit = RateLimit(events_per_second=1000.0, requests_per_second=1000.0,
                                   max_in_flight=8)
    # vendors.md §5 limits; linger 0.5 s is analytics-python's flush interval.
    batching = BatchLimits(
        max_events=MAX_BATCH_EVENTS, max_bytes=MAX_BATCH_BYTES, linger_seconds=0.5
    )
    dedupe_key = "messageId"
    presets = (
        ActionSpec(
            name="Forward events",
            trigger="type != null",
            mapping={field: {"@path": f"$.{field}"} for field in FORWARDED_FIELDS},
            fields=(
                FieldSpec("messageId", required=True, description="Segment's dedupe key."),
                FieldSpec("type", required=True, description="identify, track, page, ..."),
                FieldSpec("timestamp", description="When it happened (ISO 8601)."),
            ),
        ),
    )

    settings: SegmentSettings

    @classmethod
    def check_settings(cls, settings: msgspec.Struct) -> None:
        assert isinstance(settings, SegmentSettings)
        check_http_url("endpoint", settings.endpoint, "https://api.segment.io")
        check_not_blank("write_key", settings.write_key, cls.settings_example["write_key"])

    def validate_item(self, action: str, payload: dict[str, Any]) -> str | None:
        size = len(json_bytes(payload))
        if size > MAX_MESSAGE_BYTES:
            return f"message is {size} bytes; Segment accepts at most {MAX_MESSAGE_BYTES} (32 KB)"
        kind = payload.get("type")
        if kind not in MESSAGE_TYPES:
            return f"`type` must be one of {', '.join(MESSAGE_TYPES)}; got {kind!r}"
        if payload.get("userId") in (None, "") and payload.get("anonymousId") in (None, ""):
            return "Segment drops messages without `userId` or `anonymousId` (no_user_anon_id)"
        if kind == "track" and not payload.get("event"):
            return "Segment drops track messages without `event`"
        if kind == "group" and payload.get("groupId") in (None, ""):
            return "group messages need `groupId`"
        if kind == "alias" and payload.get("previousId") in (None, ""):
            return "alias messages need `previousId`"
        return None

    def build_request(self, action: str, items: list[Item]) -> OutboundRequest:
        body = json_bytes({"batch": [item.payload for item in items], "sentAt": utc_now_iso()})
        headers = {
            "Content-Type": "application/json",
            "Authorization": basic_auth(self.settings.write_key),
        }
        return OutboundRequest("POST", batch_url(self.settings.endpoint), headers, body, len(items))

    def classify(
        self, status: int, headers: Mapping[str, str], body: bytes, item_count: int
    ) -> Outcome:
        """analytics-python's table (vendors.md §5 [33]), which differs from the
        shared one: 410 and 460 are retried, 501 and 505 are not; Retry-After is
        capped at 300 s; a 400 is also how the API refuses an oversize batch."""
        if 200 <= status <= 299:
            return Sent()
        detail = json_detail(body, "message", "error", "code") or body_text(body)
        reason = f"HTTP {status}: {detail}" if detail else f"HTTP {status}"
        retryable = status in (408, 410, 429, 460) or (
            500 <= status <= 599 and status not in (501, 505)
        )
        if retryable:
            after = retry_after_seconds(headers)
            return Retry(reason, None if after is None else min(after, MAX_RETRY_AFTER))
        return Reject(reason, split=status in (400, 413) and item_count > 1)
