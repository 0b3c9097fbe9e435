"""Customer.io: people and events through the Track API v1.

Contract: vendors.md §4 "Customer.io Track API" (docs.customer.io/api/track/,
the Track OpenAPI, docs.customer.io/journeys/invalid-api-requests,
customerio-python).

Payload shapes (routing is by shape, so custom actions work too):
- identify `{"identifier", "attributes": {...}}` → `PUT /api/v1/customers/{id}`
  (an idempotent upsert; `_timestamp` orders out-of-order updates, so the
  preset sets it from the trait or the message timestamp, as DESIGN asks);
- event `{"identifier", "name", "type", "timestamp", "data", "id"}` →
  `POST /api/v1/customers/{id}/events`; without an `identifier` but with an
  `anonymous_id` → `POST /api/v1/events`.

v1 takes one entity per request, so the type is unbatched (`max_events` 1).
Times are unix seconds (`timestamp`, `created_at`, `_timestamp`); attribute
values must be flat, so objects and arrays are sent as JSON text rather than
dropped. Documented limits (identifier ≤150 bytes, attribute names ≤150
bytes, values ≤1000 bytes, ≤300 attributes, event name ≤100 bytes, data
≤100,000 bytes) are checked by `validate_item` before sending.

Dedupe: Customer.io ignores a repeated event `id`, documented as a ULID. The id
is derived from the stored event: messageId itself if it already is a ULID,
else a ULID whose time part is the event timestamp and whose 80 random bits
are the first 10 bytes of SHA-256(messageId) — valid, time-sortable and the
same on every retry and replay.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import quote

import msgspec
from msgspec import Meta

from millpond.actions import ActionSpec, FieldSpec
from millpond.destinations.audiences import TRAITS, audience_preset
from millpond.destinations.base import (
    BatchLimits,
    DestinationType,
    Item,
    OutboundRequest,
    Outcome,
    RateLimit,
    classify_status,
)
from millpond.destinations.registry import register
from millpond.destinations.settings import check_http_url, check_not_blank
from millpond.destinations.wire import (
    basic_auth,
    byte_len,
    id_text,
    json_bytes,
    parse_time,
    to_epoch_seconds,
)

HOSTS = {"us": "https://track.customer.io", "eu": "https://track-eu.customer.io"}
MAX_ID_BYTES = 150
MAX_ATTRIBUTE_NAME_BYTES = 150
MAX_ATTRIBUTE_VALUE_BYTES = 1000
MAX_ATTRIBUTES = 300
MAX_EVENT_NAME_BYTES = 100
MAX_EVENT_DATA_BYTES = 100_000
EVENT_TYPES = ("event", "page", "screen")
#: Default trigger window of the event presets (identify has none: attribute updates of any
#: age are safe, ``_timestamp`` orders them). See README "Trigger windows".
MESSAGING_EVENT_WINDOW = "72h"
TIME_ATTRIBUTES = ("_timestamp", "created_at")

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_ULID = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$")


def event_id(message_id: str, timestamp: Any) -> str:
    """The deterministic ULID for an event (see the module docstring)."""
    if _ULID.match(message_id.upper()):
        return message_id.upper()
    parsed = parse_time(timestamp)
    millis = int(parsed.timestamp() * 1000) if parsed else 0
    millis = min(max(millis, 0), (1 << 48) - 1)
    entropy = int.from_bytes(hashlib.sha256(message_id.encode()).digest()[:10], "big")
    value = (millis << 80) | entropy
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def _when(path: str) -> dict:
    return {"@if": {"exists": {"@path": path}, "then": {"@path": path}}}


def _event_mapping(kind: str, name: Any) -> dict:
    return {
        "identifier": _when("$.userId"),
        "anonymous_id": _when("$.anonymousId"),
        "name": name,
        "type": kind,
        "timestamp": {"@path": "$.timestamp"},
        "id": {"@path": "$.messageId"},
        "data": {"@path": "$.properties"},
    }


_EVENT_FIELDS = (
    FieldSpec("identifier", description="Person id (userId); else anonymous_id is used."),
    FieldSpec("anonymous_id", description="For events of people not identified yet."),
    FieldSpec("name", required=True, description="Event name (≤100 bytes)."),
    FieldSpec("timestamp", description="Event time; sent as unix seconds."),
    FieldSpec("id", description="Dedupe key: a ULID derived from it (else from messageId)."),
    FieldSpec("data", description="Event properties (≤100,000 bytes)."),
)


class CustomerIoSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    site_id: Annotated[str, Meta(description="Track API site id (Basic auth user name).")]
    api_key: Annotated[str, Meta(description="Track API key (Basic auth password).")]
    region: Annotated[
        Literal["us", "eu"], Meta(description="us: track.customer.io; eu: track-eu.customer.io")
    ] = "us"
    endpoint: Annotated[
        str | None, Meta(description="Override the API base URL (a proxy or a test fake).")
    ] = None


@register
class CustomerIo(DestinationType):
    """People (identify) and events (track, page, screen) via Track API v1."""

    name = "customerio"
    title = "Customer.io (Track API)"
    docs = "https://docs.customer.io/api/track/"
    settings_type = CustomerIoSettings
    settings_example: ClassVar[dict] = {
        "site_id": "0123456789abcdef0123",
        "api_key": "fedcba9876543210fedc",
        "region": "us",
    }
    secret_fields = frozenset({"api_key"})
    replayable = True
    # vendors.md §4 Limits: fair use 100 req/s (older docs) vs 1000 req/s
    # (current OpenAPI) — conflict, so the stricter 100; one event per request.
    # One event a request: 16 in flight reach the 100 requests/s at ~150 ms latency.
    default_rate_limit = RateLimit(events_per_second=100.0, requests_per_second=100.0,
                                   max_in_flight=16)
    # v1 is one entity per request. max_bytes only bounds a single item here:
    # validate_item enforces the real per-field limits.
    batching = BatchLimits(max_events=1, max_bytes=512 * 1024, linger_seconds=0.0)
    dedupe_key = "id (event ULID derived from messageId); identify is an idempotent upsert"
    presets = (
        ActionSpec(
            name="Identify person",
            trigger='type = "identify" and userId != null',
            mapping={
                "identifier": {"@path": "$.userId"},
                "attributes": {
                    "@merge": {
                        "direction": "right",
                        "objects": [
                            {
                                "_timestamp": {"@path": "$.timestamp"},
                                "anonymous_id": _when("$.anonymousId"),
                                "created_at": _when("$.traits.createdAt"),
                            },
                            {"@path": "$.traits"},
                        ],
                    }
                },
            },
            fields=(
                FieldSpec("identifier", required=True, description="Person id (≤150 bytes)."),
                FieldSpec("attributes", required=True, description="Traits; `_timestamp` orders."),
            ),
        ),
        ActionSpec(
            name="Track event",
            trigger='type = "track"',
            mapping=_event_mapping("event", {"@path": "$.event"}),
            fields=_EVENT_FIELDS,
            # Customer.io events trigger campaigns: a backfilled two-year-old purchase must
            # not send today's "thanks for your order" e-mail. Clear it to send history.
            max_event_age=MESSAGING_EVENT_WINDOW,
        ),
        ActionSpec(
            name="Track page view",
            trigger='type = "page"',
            mapping=_event_mapping(
                "page",
                {
                    "@if": {
                        "exists": {"@path": "$.properties.url"},
                        "then": {"@path": "$.properties.url"},
                        "else": {"@path": "$.name"},
                    }
                },
            ),
            fields=_EVENT_FIELDS,
            max_event_age=MESSAGING_EVENT_WINDOW,
        ),
        ActionSpec(
            name="Track screen view",
            trigger='type = "screen"',
            mapping=_event_mapping("screen", {"@path": "$.name"}),
            fields=_EVENT_FIELDS,
            max_event_age=MESSAGING_EVENT_WINDOW,
        ),
        audience_preset(
            {"identifier": {"@path": "$.userId"},
             "attributes": {"@merge": {"direction": "right", "objects": [
                 {"_timestamp": {"@path": "$.timestamp"}}, TRAITS]}}},
            (FieldSpec("identifier", required=True, description="Person id (≤150 bytes)."),
             FieldSpec("attributes", required=True,
                       description="`<segment key>: true|false`; `_timestamp` orders.")),
        ),
    )

    settings: CustomerIoSettings

    @classmethod
    def check_settings(cls, settings: msgspec.Struct) -> None:
        assert isinstance(settings, CustomerIoSettings)
        check_not_blank("site_id", settings.site_id, cls.settings_example["site_id"])
        check_not_blank("api_key", settings.api_key, cls.settings_example["api_key"])
        if settings.endpoint is not None:
            check_http_url("endpoint", settings.endpoint, "https://track.customer.io")

    @property
    def base_url(self) -> str:
        return (self.settings.endpoint or HOSTS[self.settings.region]).rstrip("/")

    def deletion_requests(self, user_ids: list[str], anonymous_ids: list[str],
                          requester: str) -> list[OutboundRequest] | str:
        """Track API `DELETE /api/v1/customers/{identifier}` ("Delete a customer: removes
        them, and all of their information"), one per user id; anonymous ids are not
        Customer.io identifiers (their events were merged into the person on identify)."""
        if not user_ids:
            return "Customer.io deletes people by identifier; this person has no user id"
        headers = {"Authorization": basic_auth(self.settings.site_id, self.settings.api_key)}
        return [OutboundRequest("DELETE",
                                f"{self.base_url}/api/v1/customers/{quote(uid, safe='')}",
                                headers, b"", 1) for uid in user_ids]

    def group_key(self, action: str, payload: dict[str, Any]) -> str:
        if "attributes" in payload:
            return "identify"
        return "event" if payload.get("identifier") is not None else "anonymous_event"

    def validate_item(self, action: str, payload: dict[str, Any]) -> str | None:
        route = self.group_key(action, payload)
        if route == "anonymous_event":
            if id_text(payload.get("anonymous_id")) in (None, ""):
                return "an event needs `identifier` (a person id) or `anonymous_id`"
        elif (reason := _check_identifier(payload.get("identifier"))) is not None:
            return reason
        if route == "identify":
            return _check_attributes(payload.get("attributes"))
        name = payload.get("name")
        if not isinstance(name, str) or not name:
            return "`name` (the event name) must be a non-empty string"
        if byte_len(name) > MAX_EVENT_NAME_BYTES:
            return f"event name is {byte_len(name)} bytes; Customer.io accepts ≤100"
        if payload.get("type", "event") not in EVENT_TYPES:
            return f"`type` must be one of {', '.join(EVENT_TYPES)}; got {payload.get('type')!r}"
        data = payload.get("data")
        if data is not None and not isinstance(data, dict):
            return "`data` must be an object"
        if data is not None and byte_len(data) > MAX_EVENT_DATA_BYTES:
            return f"event data is {byte_len(data)} bytes; Customer.io accepts ≤100,000"
        when = payload.get("timestamp")
        if when is not None and not isinstance(to_epoch_seconds(when), int):
            return f"`timestamp` must be unix seconds or ISO 8601; got {when!r}"
        return None

    def build_request(self, action: str, items: list[Item]) -> OutboundRequest:
        item = items[0]
        payload = item.payload
        route = self.group_key(action, payload)
        headers = {
            "Content-Type": "application/json",
            "Authorization": basic_auth(self.settings.site_id, self.settings.api_key),
        }
        if route == "identify":
            identifier = quote(id_text(payload.get("identifier")) or "", safe="")
            url = f"{self.base_url}/api/v1/customers/{identifier}"
            attributes = payload.get("attributes")
            body = _attributes(attributes if isinstance(attributes, dict) else {})
            return OutboundRequest("PUT", url, headers, json_bytes(body), 1)
        record = _event_body(item)
        if route == "event":
            identifier = quote(id_text(payload["identifier"]) or "", safe="")
            url = f"{self.base_url}/api/v1/customers/{identifier}/events"
        else:
            record["anonymous_id"] = id_text(payload.get("anonymous_id"))
            url = f"{self.base_url}/api/v1/events"
        return OutboundRequest("POST", url, headers, json_bytes(record), 1)

    def classify(
        self, status: int, headers: Mapping[str, str], body: bytes, item_count: int
    ) -> Outcome:
        """Shared table, with the v1 error text pulled out of either documented
        shape: `{"meta": {"error": "…"}}` or `{"meta": {"errors": ["…"]}}`."""
        return classify_status(status, headers, body, item_count, _meta_error(body))


def _meta_error(body: bytes) -> str | None:
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
    meta = data.get("meta") if isinstance(data, dict) else None
    if not isinstance(meta, dict):
        return None
    if isinstance(meta.get("error"), str):
        return meta["error"]
    errors = meta.get("errors")
    if isinstance(errors, list) and errors:
        return "; ".join(str(error) for error in errors)
    return None


def _check_identifier(value: Any) -> str | None:
    text = id_text(value)
    if text is None or not text.strip():
        return "`identifier` (the person id) must be a non-empty string"
    if byte_len(text) > MAX_ID_BYTES:
        return f"identifier is {byte_len(text)} bytes; Customer.io accepts ≤{MAX_ID_BYTES}"
    return None


def _check_attributes(attributes: Any) -> str | None:
    if not isinstance(attributes, dict):
        return "`attributes` must be an object"
    if len(attributes) > MAX_ATTRIBUTES:
        return f"{len(attributes)} attributes; Customer.io accepts ≤{MAX_ATTRIBUTES} per call"
    for name, value in _attributes(attributes).items():
        if byte_len(name) > MAX_ATTRIBUTE_NAME_BYTES:
            return f"attribute name {name[:40]!r}… is longer than {MAX_ATTRIBUTE_NAME_BYTES} bytes"
        if isinstance(value, str) and byte_len(value) > MAX_ATTRIBUTE_VALUE_BYTES:
            return f"attribute `{name}` is longer than {MAX_ATTRIBUTE_VALUE_BYTES} bytes"
    return None


def _attributes(attributes: dict) -> dict:
    """Flat attributes with unix-second times; objects/arrays as JSON text."""
    flat: dict[str, Any] = {}
    for name, value in attributes.items():
        if name in TIME_ATTRIBUTES:
            value = to_epoch_seconds(value)
        if isinstance(value, dict | list):
            value = json_bytes(value).decode()
        flat[name] = value
    return flat


def _event_body(item: Item) -> dict:
    payload, event = item.payload, item.event
    record: dict[str, Any] = {"name": payload.get("name"), "type": payload.get("type", "event")}
    when = payload.get("timestamp")
    if when is None:
        when = event.get("timestamp")
    seconds = to_epoch_seconds(when)
    if isinstance(seconds, int):
        record["timestamp"] = seconds
    raw_id = payload.get("id", event.get("messageId"))
    if raw_id is not None:
        record["id"] = event_id(str(raw_id), event.get("timestamp", when))
    record["data"] = payload.get("data") or {}
    return record
