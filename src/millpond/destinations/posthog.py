"""PostHog: events, page/screen views and identifies through batch capture.

Contract: vendors.md §3 "PostHog (capture)" (posthog.com/docs/api/capture,
posthog-python `request.py`/`consumer.py`, rust capture `api.rs`).

- `POST {host}/batch/` with `{"api_key", "historical_migration", "batch": [...]}`;
  the project key goes in the body, no auth header.
- `uuid` = UUIDv5(MILLPOND_NAMESPACE, messageId). PostHog's only dedupe handle
  is the event uuid, which must be a valid UUID; deriving it (rather than
  generating a random one per send, as SDKs do per event) makes every retry
  and every replay of the same stored event carry the same uuid. PostHog's
  dedupe by uuid is best-effort (ClickHouse merges), but this is the most a
  client can do. The namespace must never change, or a replay after an
  upgrade would no longer match.
- One bad event rejects the whole request (400), so `validate_item` checks
  what capture checks (event name, non-blank distinct_id, valid uuid, size).
- page → `$pageview` (with `$current_url`), screen → `$screen`
  (`$screen_name`), identify → `$identify` with `properties.$set` = traits.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, ClassVar
from urllib.parse import quote

import msgspec
from msgspec import Meta

from millpond.actions import ActionSpec, FieldSpec
from millpond.destinations.base import (
    BatchLimits,
    DestinationType,
    Item,
    OutboundRequest,
    RateLimit,
)
from millpond.destinations.registry import register
from millpond.destinations.settings import check_http_url, check_not_blank
from millpond.destinations.wire import byte_len, id_text, json_bytes, to_iso

#: Fixed forever: UUIDv5 namespace for PostHog event uuids (see module docs).
MILLPOND_NAMESPACE = uuid.UUID("6d696c6c-706f-4e64-8000-706f7374686f")
#: posthog-python caps an event at 900 KiB (the server discards >1 MB).
MAX_EVENT_BYTES = 900 * 1024
#: posthog-python caps a batch at 5 MiB (the server takes <20 MB); 64 KiB spare
#: for the envelope and the uuid/distinct_id build_request may add.
MAX_BATCH_BYTES = 5 * 1024 * 1024 - 64 * 1024


def event_uuid(message_id: str) -> str:
    """The deterministic PostHog uuid of a stored event."""
    return str(uuid.uuid5(MILLPOND_NAMESPACE, message_id))


def _when(path: str) -> dict:
    return {"@if": {"exists": {"@path": path}, "then": {"@path": path}}}


_DISTINCT_ID = {
    "@if": {
        "exists": {"@path": "$.userId"},
        "then": {"@path": "$.userId"},
        "else": {"@path": "$.anonymousId"},
    }
}


def _capture(event: Any, properties: list[Any]) -> dict:
    """A batch item; context-derived `$` properties are merged last (they win)."""
    context = {
        "$ip": _when("$.context.ip"),
        "$current_url": _when("$.context.page.url"),
        "$referrer": _when("$.context.page.referrer"),
        "$os": _when("$.context.os.name"),
        "$lib": "millpond",
    }
    return {
        "event": event,
        "distinct_id": _DISTINCT_ID,
        "timestamp": {"@path": "$.timestamp"},
        "uuid": {"@path": "$.messageId"},
        "properties": {"@merge": {"direction": "right", "objects": [*properties, context]}},
    }


_FIELDS = (
    FieldSpec("event", required=True, description="Event name."),
    FieldSpec("distinct_id", description="userId, else anonymousId (filled in if left out)."),
    FieldSpec("uuid", description="Sent as UUIDv5 of this value, else of messageId (dedupe)."),
    FieldSpec("timestamp", description="ISO 8601 event time."),
)


class PostHogSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    api_key: Annotated[str, Meta(description="Project API key (phc_…), sent in the body.")]
    host: Annotated[
        str,
        Meta(
            description="Ingestion host: https://us.i.posthog.com, https://eu.i.posthog.com "
            "or your self-hosted URL."
        ),
    ] = "https://us.i.posthog.com"
    historical_migration: Annotated[
        bool,
        Meta(description="Mark batches as historical (backfills of events ≥48 h old)."),
    ] = False
    personal_api_key: Annotated[
        str | None,
        Meta(description="Personal API key (phx_…, scope person:write): lets regulations "
             "delete persons; without it (and project_id) a deletion says not_supported."),
    ] = None
    project_id: Annotated[
        str | None, Meta(description="Project id, for the persons API (deletions).")
    ] = None
    api_host: Annotated[
        str | None,
        Meta(description="Private API host (https://us.posthog.com); default: `host` "
             "without its `.i` ingestion label."),
    ] = None


#: The most distinct ids one bulk deletion may name (the API's documented limit).
MAX_DELETION_IDS = 1000


@register
class PostHog(DestinationType):
    """Events, page/screen views and identifies via PostHog's `/batch/` capture."""

    name = "posthog"
    title = "PostHog"
    docs = "https://posthog.com/docs/api/capture"
    settings_type = PostHogSettings
    settings_example: ClassVar[dict] = {
        "api_key": "phc_0123456789abcdefghijklmnopqrstuvwxyzABCDE",
        "host": "https://us.i.posthog.com",
    }
    secret_fields = frozenset({"api_key", "personal_api_key"})
    replayable = True
    # vendors.md §3 Limits: "No documented request-rate limit on capture; the
    # server can still return 429". 1000 events/s is millpond's choice, the
    # lowest project-level figure documented among the analytics vendors here.
    # 8 in flight: 50 requests/s of 20 events at ~200 ms each.
    default_rate_limit = RateLimit(events_per_second=1000.0, max_in_flight=8)
    # vendors.md §3 Limits: no cap on events per batch, body <20 MB; we follow
    # posthog-python's 5 MiB batch cap. 1000 events keeps a failed request cheap.
    batching = BatchLimits(max_events=1000, max_bytes=MAX_BATCH_BYTES, linger_seconds=1.0)
    dedupe_key = "uuid (UUIDv5 of messageId)"
    presets = (
        ActionSpec(
            name="Track events",
            trigger='type = "track"',
            mapping=_capture({"@path": "$.event"}, [{"@path": "$.properties"}]),
            fields=_FIELDS,
        ),
        ActionSpec(
            name="Page views",
            trigger='type = "page"',
            mapping=_capture(
                "$pageview",
                [
                    {"@path": "$.properties"},
                    {"$current_url": _when("$.properties.url"), "title": _when("$.name")},
                ],
            ),
            fields=_FIELDS,
        ),
        ActionSpec(
            name="Screen views",
            trigger='type = "screen"',
            mapping=_capture(
                "$screen", [{"@path": "$.properties"}, {"$screen_name": _when("$.name")}]
            ),
            fields=_FIELDS,
        ),
        ActionSpec(
            name="Identify user",
            trigger='type = "identify"',
            mapping=_capture(
                "$identify",
                [{"$set": {"@path": "$.traits"}, "$anon_distinct_id": _when("$.anonymousId")}],
            ),
            fields=(*_FIELDS, FieldSpec("properties", description="With `$set`: traits to set.")),
        ),
    )

    settings: PostHogSettings

    @classmethod
    def check_settings(cls, settings: msgspec.Struct) -> None:
        assert isinstance(settings, PostHogSettings)
        check_not_blank("api_key", settings.api_key, cls.settings_example["api_key"])
        check_http_url("host", settings.host, "https://us.i.posthog.com")

    def validate_item(self, action: str, payload: dict[str, Any]) -> str | None:
        name = payload.get("event")
        if not isinstance(name, str) or not name:
            return "`event` (the event name) must be a non-empty string"
        properties = payload.get("properties", {})
        if not isinstance(properties, dict):
            return "`properties` must be an object"
        distinct_id = payload.get("distinct_id", properties.get("distinct_id"))
        if distinct_id is not None and not str(distinct_id).strip():
            return "PostHog discards events whose `distinct_id` is empty or blank"
        raw_uuid = payload.get("uuid")
        if raw_uuid is not None and not isinstance(raw_uuid, str):
            return f"`uuid` must be a string; got {raw_uuid!r}"
        if byte_len(payload) > MAX_EVENT_BYTES:
            return f"event is larger than {MAX_EVENT_BYTES} bytes (posthog-python's 900 KiB cap)"
        return None

    def deletion_requests(self, user_ids: list[str], anonymous_ids: list[str],
                          requester: str) -> list[OutboundRequest] | str:
        """Persons API: `POST /api/projects/{project_id}/persons/bulk_delete/` with
        `{"distinct_ids", "delete_events": true}` (up to 1000 ids), `Authorization:
        Bearer <personal API key>`."""
        key, project = self.settings.personal_api_key, self.settings.project_id
        if not key or not project:
            return ("set settings.personal_api_key and settings.project_id: PostHog's "
                    "persons API needs both")
        ids = [*user_ids, *anonymous_ids]
        host = (self.settings.api_host or self.settings.host.replace(".i.posthog.com",
                                                                     ".posthog.com"))
        url = f"{host.rstrip('/')}/api/projects/{quote(project, safe='')}/persons/bulk_delete/"
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        return [OutboundRequest("POST", url, headers,
                                json_bytes({"distinct_ids": ids[i:i + MAX_DELETION_IDS],
                                            "delete_events": True}), 1)
                for i in range(0, len(ids), MAX_DELETION_IDS)]

    def build_request(self, action: str, items: list[Item]) -> OutboundRequest:
        body = {
            "api_key": self.settings.api_key,
            "historical_migration": self.settings.historical_migration,
            "batch": [_capture_item(item) for item in items],
        }
        url = self.settings.host.rstrip("/") + "/batch/"
        headers = {"Content-Type": "application/json"}
        return OutboundRequest("POST", url, headers, json_bytes(body), len(items))


def _capture_item(item: Item) -> dict:
    """The batch item with distinct_id, timestamp and a valid, stable uuid."""
    record = dict(item.payload)
    event = item.event
    if record.get("distinct_id") is None:
        props = record.get("properties") or {}
        fallback = props.get("distinct_id") if isinstance(props, dict) else None
        if fallback is None:
            fallback = event.get("userId") or event.get("anonymousId")
        record["distinct_id"] = fallback
    if (text := id_text(record.get("distinct_id"))) is not None:
        record["distinct_id"] = text
    if record.get("timestamp") is None and event.get("timestamp") is not None:
        record["timestamp"] = event["timestamp"]
    if record.get("timestamp") is not None:
        record["timestamp"] = to_iso(record["timestamp"])
    raw = record.get("uuid")
    if raw is None:
        raw = event.get("messageId")
    if raw is None:
        record.pop("uuid", None)
    else:
        # Always derived, also when the mapped value is already a UUID: the
        # uuid then depends only on messageId, whichever mapping produced it.
        record["uuid"] = event_uuid(str(raw))
    return record
