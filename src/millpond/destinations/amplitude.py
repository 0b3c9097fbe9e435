"""Amplitude: events and identifies through HTTP V2 (or the Batch API).

Contract: vendors.md §2 "Amplitude (HTTP V2, Batch, Identify)" (amplitude.com/
docs/apis/analytics/http-v2, …/batch-event-upload, …/http-api-batching-retries).

- `POST /2/httpapi` (default) or `POST /batch` (setting `api: "batch"`, for
  big backfills: 20 MB per request instead of 1 MB); same body
  `{"api_key", "events": [...], "options"}`.
- `insert_id` = messageId: Amplitude ignores a repeated insert_id seen in the
  past 7 days, so a retry or a replay inside that window is deduplicated.
- `time` is integer milliseconds; `build_request` converts ISO timestamps.
- Identify is an event with `event_type: "$identify"` and
  `user_properties: {"$set": traits}` in the *same* API rather than the
  Identify API: it shares batching, rate limit and response handling with
  events, carries an `insert_id` (the Identify API has no dedupe key), keeps
  identifies ordered with the events around them, and has a documented 200
  body (the Identify API's is unconfirmed, and it is form-encoded).
- A 400 listing `events_with_invalid_fields` / `events_with_missing_fields`
  rejects the whole request: those indexes are dead-lettered and the others
  resent (`Partial` with nothing sent). A 429 names throttled users/devices;
  the whole request is retried after the documented pause (30 s for HTTP V2,
  15 s for Batch) — already-ingested events are dropped by insert_id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

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
    Partial,
    RateLimit,
    Retry,
    Sent,
    body_text,
    classify_status,
    json_detail,
    retry_after_seconds,
)
from millpond.destinations.registry import register
from millpond.destinations.settings import check_http_url, check_not_blank
from millpond.destinations.wire import (
    basic_auth,
    byte_len,
    drop_none,
    id_text,
    json_bytes,
    origin_of,
    to_epoch_ms,
)

HOSTS = {"us": "https://api2.amplitude.com", "eu": "https://api.eu.amplitude.com"}
PATHS = {"httpapi": "/2/httpapi", "batch": "/batch"}
#: vendors.md §2 Limits: ≤2000 events per request; <1 MB (HTTP V2) or 20 MB (Batch).
MAX_EVENTS = 2000
MAX_REQUEST_BYTES = {"httpapi": 1_000_000, "batch": 20_000_000}
#: 429 pause per vendors.md §2 Responses: 30 s for httpapi, ~15 s for batch.
THROTTLE_PAUSE = {"httpapi": 30.0, "batch": 15.0}
DEFAULT_MIN_ID_LENGTH = 5
BANNED_IDS = frozenset(
    {
        "anonymous",
        "nil",
        "none",
        "null",
        "n/a",
        "na",
        "undefined",
        "unknown",
        "",
        "00000000-0000-0000-0000-000000000000",
        "{}",
        "lmy47d",
        "0",
        "-1",
    }
)


def _when(path: str) -> dict:
    return {"@if": {"exists": {"@path": path}, "then": {"@path": path}}}


#: Fields every preset maps the same way.
_COMMON = {
    "user_id": _when("$.userId"),
    "device_id": _when("$.anonymousId"),
    "time": {"@path": "$.timestamp"},
    "insert_id": {"@path": "$.messageId"},
    "ip": _when("$.context.ip"),
    "language": _when("$.context.locale"),
    "os_name": _when("$.context.os.name"),
    "os_version": _when("$.context.os.version"),
    "device_model": _when("$.context.device.model"),
    "app_version": _when("$.context.app.version"),
    "library": "millpond",
}

_FIELDS = (
    FieldSpec("event_type", required=True, description="Event name."),
    FieldSpec("user_id", description="userId; user_id or device_id is required."),
    FieldSpec("device_id", description="anonymousId."),
    FieldSpec("time", description="Event time; sent as epoch ms."),
    FieldSpec("insert_id", description="Dedupe key; messageId when left out."),
)


def _merged(*objects: Any) -> dict:
    return {"@merge": {"direction": "right", "objects": list(objects)}}


class AmplitudeSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    api_key: Annotated[str, Meta(description="Project API key (sent as `api_key` in the body).")]
    api: Annotated[
        Literal["httpapi", "batch"],
        Meta(description="httpapi: /2/httpapi (1 MB requests); batch: /batch (20 MB)."),
    ] = "httpapi"
    region: Annotated[
        Literal["us", "eu"], Meta(description="us: api2.amplitude.com; eu: api.eu.amplitude.com")
    ] = "us"
    min_id_length: (
        Annotated[
            int,
            Meta(ge=1, description="Shortest accepted user_id/device_id (Amplitude default: 5)."),
        ]
        | None
    ) = None
    endpoint: Annotated[
        str | None, Meta(description="Override the API base URL (a proxy or a test fake).")
    ] = None
    secret_key: Annotated[
        str | None,
        Meta(description="Project secret key: lets regulations call the User Privacy API "
             "(deletions); without it a deletion says not_supported."),
    ] = None


#: The User Privacy API's hosts (v1: ``POST /api/2/deletions/users``, Basic api_key:secret).
PRIVACY_HOSTS = {"us": "https://amplitude.com", "eu": "https://analytics.eu.amplitude.com"}
#: The most user ids one deletion request may name (the API's documented limit).
MAX_DELETION_IDS = 100


@register
class Amplitude(DestinationType):
    """Events and `$identify` user-property updates via HTTP V2 or Batch."""

    name = "amplitude"
    title = "Amplitude"
    docs = "https://amplitude.com/docs/apis/analytics/http-v2"
    settings_type = AmplitudeSettings
    settings_example: ClassVar[dict] = {"api_key": "0123456789abcdef0123456789abcdef"}
    secret_fields = frozenset({"api_key", "secret_key"})
    replayable = True
    # vendors.md §2 Limits: the Starter plan allows ≤100 batches/s and 1000
    # events/s, the lowest documented project-level figure. (Per user/device
    # the limit is 30 events/s; a 429 names the throttled ids and is retried.)
    # 8 in flight: 50 requests/s of 20 events at ~200 ms each.
    default_rate_limit = RateLimit(events_per_second=1000.0, requests_per_second=100.0,
                                   max_in_flight=8)
    # HTTP V2: ≤2000 events and <1 MB; 100 KB kept for the envelope and the
    # fields build_request may add (insert_id, ms time). Batch instances widen
    # max_bytes to 19 MB (see __init__).
    batching = BatchLimits(max_events=MAX_EVENTS, max_bytes=900_000, linger_seconds=1.0)
    dedupe_key = "insert_id (messageId)"
    presets = (
        ActionSpec(
            name="Track events",
            trigger='type = "track"',
            mapping={
                "event_type": {"@path": "$.event"},
                "event_properties": {"@path": "$.properties"},
                "user_properties": {"@path": "$.context.traits"},
                **_COMMON,
            },
            fields=_FIELDS,
        ),
        ActionSpec(
            name="Page views",
            trigger='type = "page"',
            mapping={
                "event_type": "Loaded a Page",
                "event_properties": _merged(
                    {"@path": "$.properties"},
                    {"name": _when("$.name"), "category": _when("$.category")},
                ),
                **_COMMON,
            },
            fields=_FIELDS,
        ),
        ActionSpec(
            name="Screen views",
            trigger='type = "screen"',
            mapping={
                "event_type": "Loaded a Screen",
                "event_properties": _merged({"@path": "$.properties"}, {"name": _when("$.name")}),
                **_COMMON,
            },
            fields=_FIELDS,
        ),
        ActionSpec(
            name="Identify user",
            trigger='type = "identify"',
            mapping={
                "event_type": "$identify",
                "user_properties": {"$set": _merged({"@path": "$.traits"})},
                **_COMMON,
            },
            fields=(
                *_FIELDS,
                FieldSpec("user_properties", required=True, description='{"$set": traits}'),
            ),
        ),
        audience_preset(
            {"event_type": "$identify", "user_properties": {"$set": TRAITS}, **_COMMON},
            (*_FIELDS, FieldSpec("user_properties", required=True,
                                 description='{"$set": {"<segment key>": true|false}}')),
        ),
    )

    settings: AmplitudeSettings

    def __init__(self, settings: msgspec.Struct) -> None:
        super().__init__(settings)
        if self.settings.api == "batch":
            self.batching = BatchLimits(
                max_events=MAX_EVENTS, max_bytes=19_000_000, linger_seconds=1.0
            )

    @classmethod
    def check_settings(cls, settings: msgspec.Struct) -> None:
        assert isinstance(settings, AmplitudeSettings)
        check_not_blank("api_key", settings.api_key, cls.settings_example["api_key"])
        if settings.endpoint is not None:
            check_http_url("endpoint", settings.endpoint, "https://api2.amplitude.com")

    @property
    def url(self) -> str:
        base = (self.settings.endpoint or HOSTS[self.settings.region]).rstrip("/")
        return base + PATHS[self.settings.api]

    def deletion_requests(self, user_ids: list[str], anonymous_ids: list[str],
                          requester: str) -> list[OutboundRequest] | str:
        """User Privacy API v1: `POST /api/2/deletions/users` with `{"user_ids",
        "requester", "ignore_invalid_id"}`, at most 100 ids each, Basic auth with the
        API key and the secret key. Amplitude deletes by user id (or Amplitude id), not
        by device id."""
        secret = self.settings.secret_key
        if not secret:
            return "set settings.secret_key: Amplitude's User Privacy API needs it"
        if not user_ids:
            return "Amplitude deletes people by user id; this person has no user id"
        endpoint = self.settings.endpoint
        base = (origin_of(endpoint) if endpoint else PRIVACY_HOSTS[self.settings.region])
        headers = {"Authorization": basic_auth(self.settings.api_key, secret),
                   "Content-Type": "application/json"}
        return [OutboundRequest("POST", f"{base}/api/2/deletions/users", headers,
                                json_bytes({"user_ids": user_ids[i:i + MAX_DELETION_IDS],
                                            "requester": requester,
                                            "ignore_invalid_id": True}), 1)
                for i in range(0, len(user_ids), MAX_DELETION_IDS)]

    def validate_item(self, action: str, payload: dict[str, Any]) -> str | None:
        event_type = payload.get("event_type")
        if not isinstance(event_type, str) or not event_type:
            return "`event_type` must be a non-empty string"
        if event_type.startswith("[Amplitude]"):
            return f"event_type {event_type!r}: `[Amplitude] …` names are reserved"
        min_length = self.settings.min_id_length or DEFAULT_MIN_ID_LENGTH
        usable = 0
        for field in ("user_id", "device_id"):
            value = payload.get(field)
            if value is None:
                continue
            text = id_text(value)
            if text is None:
                return f"`{field}` must be a string; got {value!r}"
            if text.strip().lower() in BANNED_IDS:
                return f"`{field}` {text!r} is a placeholder Amplitude rejects"
            if len(text) < min_length:
                return (
                    f"`{field}` {text!r} is shorter than {min_length} characters, so Amplitude "
                    "drops it; set `min_id_length` in the destination settings to accept it"
                )
            usable += 1
        if not usable:
            return "Amplitude needs `user_id` or `device_id`"
        when = payload.get("time")
        if when is not None and not isinstance(to_epoch_ms(when), int):
            return f"`time` must be epoch ms or ISO 8601; got {when!r}"
        if byte_len(payload) >= MAX_REQUEST_BYTES[self.settings.api]:
            return "event is larger than one Amplitude request may be"
        return None

    def build_request(self, action: str, items: list[Item]) -> OutboundRequest:
        body: dict[str, Any] = {
            "api_key": self.settings.api_key,
            "events": [_event(item) for item in items],
        }
        if self.settings.min_id_length is not None:
            body["options"] = {"min_id_length": self.settings.min_id_length}
        headers = {"Content-Type": "application/json", "Accept": "*/*"}
        return OutboundRequest("POST", self.url, headers, json_bytes(body), len(items))

    def classify(
        self, status: int, headers: Mapping[str, str], body: bytes, item_count: int
    ) -> Outcome:
        if 200 <= status <= 299:
            return Sent()
        data = _decode(body)
        if status == 400 and isinstance(data, dict):
            partial = _partial(data, item_count)
            if partial is not None:
                return partial
        detail = json_detail(body, "error")
        if status == 429:
            after = retry_after_seconds(headers)
            pause = THROTTLE_PAUSE[self.settings.api] if after is None else after
            return Retry(f"HTTP 429: {detail or body_text(body)}", pause)
        return classify_status(status, headers, body, item_count, detail)


def _decode(body: bytes) -> Any:
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None


_INDEX_MAPS = {
    "events_with_invalid_fields": "invalid",
    "events_with_missing_fields": "missing",
    "events_missing_required_fields": "missing",  # the prose's spelling (vendors.md: conflict)
}


def _partial(data: dict, item_count: int) -> Partial | None:
    """Per-index 400s: listed events are rejected, the rest must be resent.
    Silenced devices (Batch API) are dead-lettered too: Amplitude has flagged
    them as spam and will not take their events for a while."""
    rejected: dict[int, str] = {}
    error = data.get("error") or "invalid events"
    for key, kind in _INDEX_MAPS.items():
        fields = data.get(key)
        if not isinstance(fields, dict):
            continue
        for field, indexes in fields.items():
            for index in indexes if isinstance(indexes, list) else ():
                if isinstance(index, int) and 0 <= index < item_count:
                    note = f"{kind} field `{field}`"
                    rejected[index] = f"{rejected[index]}, {note}" if index in rejected else note
    for index in data.get("silenced_events") or ():
        if isinstance(index, int) and 0 <= index < item_count:
            rejected.setdefault(index, "device silenced for exceeding the events-per-second limit")
    if not rejected:
        return None
    return Partial(frozenset(), {i: f"Amplitude: {error}: {why}" for i, why in rejected.items()})


def _event(item: Item) -> dict:
    """The event with ids, time and insert_id normalised for the wire."""
    event = drop_none(item.payload)
    for field in ("user_id", "device_id"):
        if field in event and (text := id_text(event[field])) is not None:
            event[field] = text
    when = event.get("time", item.event.get("timestamp"))
    millis = to_epoch_ms(when)
    if isinstance(millis, int):
        event["time"] = millis
    if "insert_id" not in event and item.event.get("messageId") is not None:
        event["insert_id"] = str(item.event["messageId"])
    return event
