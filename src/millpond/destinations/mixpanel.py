"""Mixpanel: events through the Import API, profiles through the Engage API.

Contract: vendors.md §1 "Mixpanel (Ingestion API)" (docs.mixpanel.com/reference/
import-events, ingestion.openapi.yaml, mixpanel-python).

Routing is by payload shape, so custom actions work too: a payload with a
profile operation (`$set`, `$set_once`, `$add`, `$union`, `$append`,
`$remove`, `$unset`, `$delete`) goes to `POST /engage`; anything else is an
event record `{"event", "properties"}` for `POST /import?strict=1`.

`/import` (server-side, any event age) rather than `/track` (last 5 days only)
because replays and backfills send old events. Auth: a service account
(`username:secret` + `project_id` query) if configured, else the legacy API
secret, else the project token, each as Basic user name (vendors.md §1 Auth).

Dedupe: Mixpanel treats events equal on (event, distinct_id, time,
$insert_id) as duplicates [9], so every field of that tuple must be stable
across a retry or replay. `time` is sent in milliseconds from the stored
`timestamp`; `$insert_id` comes from `messageId`. `$insert_id` must be ≤36
bytes of `[A-Za-z0-9-]` and not a placeholder like "null": a messageId that
fits (every UUID does) is used as is; any other becomes
`"x-" + first 32 hex digits of SHA-256(messageId)` (34 characters) — stable,
so a replay still deduplicates, and collision-free in practice (128 bits).
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
    Partial,
    RateLimit,
    Reject,
    Sent,
    body_text,
    classify_status,
    json_detail,
)
from millpond.destinations.errors import SettingsError
from millpond.destinations.registry import register
from millpond.destinations.settings import check_http_url, check_not_blank, show
from millpond.destinations.wire import (
    basic_auth,
    byte_len,
    json_bytes,
    origin_of,
    parse_time,
    to_epoch_ms,
)

HOSTS = {
    "us": "https://api.mixpanel.com",
    "eu": "https://api-eu.mixpanel.com",
    "in": "https://api-in.mixpanel.com",
}
PROFILE_OPS = ("$set", "$set_once", "$add", "$union", "$append", "$remove", "$unset", "$delete")
_PROFILE_OPS = frozenset(PROFILE_OPS)
#: Placeholder values Mixpanel rejects as distinct_id or $insert_id (vendors.md §1).
BANNED_IDS = frozenset(
    {
        "00000000-0000-0000-0000-000000000000",
        "anon",
        "anonymous",
        "nil",
        "none",
        "null",
        "n/a",
        "na",
        "undefined",
        "unknown",
        "<nil>",
        "0",
        "-1",
        "true",
        "false",
        "[]",
        "{}",
    }
)
MAX_EVENT_BYTES = 1_000_000  # "event <1 MB uncompressed"; /engage: "≤1 MB each"
MIN_TIME_MS = 31_536_000_000  # 1971-01-01T00:00:00Z
_INSERT_ID = re.compile(r"^[A-Za-z0-9-]{1,36}$")


def insert_id(message_id: str) -> str:
    """A valid `$insert_id` for `message_id`: itself if it fits the rule, else a
    stable hash form (see the module docstring)."""
    if _INSERT_ID.match(message_id) and message_id.lower() not in BANNED_IDS:
        return message_id
    return "x-" + hashlib.sha256(message_id.encode()).hexdigest()[:32]


def _when(path: str) -> dict:
    """`path`'s value only when it exists and is not null (mapping-kit `@if`)."""
    return {"@if": {"exists": {"@path": path}, "then": {"@path": path}}}


_DISTINCT_ID = {
    "@if": {
        "exists": {"@path": "$.userId"},
        "then": {"@path": "$.userId"},
        "else": {"@path": "$.anonymousId"},
    }
}


def _event_mapping(event_name: Any, extra: dict) -> dict:
    """An /import record: the event's own properties, then Mixpanel's reserved
    ones (which win on a name clash so dedupe keys cannot be overwritten)."""
    reserved = {
        "time": {"@path": "$.timestamp"},
        "distinct_id": _DISTINCT_ID,
        "$insert_id": {"@path": "$.messageId"},
        "$user_id": _when("$.userId"),
        "$device_id": _when("$.anonymousId"),
        "ip": _when("$.context.ip"),
        "$current_url": _when("$.context.page.url"),
        "$referrer": _when("$.context.page.referrer"),
        "$os": _when("$.context.os.name"),
        "$app_version_string": _when("$.context.app.version"),
        **extra,
    }
    return {
        "event": event_name,
        "properties": {
            "@merge": {"direction": "right", "objects": [{"@path": "$.properties"}, reserved]}
        },
    }


_TRAITS_SET = {
    "@merge": {
        "direction": "right",
        "objects": [
            {"@path": "$.traits"},
            {
                "$email": _when("$.traits.email"),
                "$name": _when("$.traits.name"),
                "$first_name": _when("$.traits.firstName"),
                "$last_name": _when("$.traits.lastName"),
                "$phone": _when("$.traits.phone"),
                "$created": _when("$.traits.createdAt"),
            },
        ],
    }
}

_EVENT_FIELDS = (
    FieldSpec("event", required=True, description="Event name."),
    FieldSpec(
        "properties",
        required=True,
        description="Event properties with `distinct_id`, `time` (sent as epoch ms) and "
        "`$insert_id`; each is filled from the stored event when left out.",
    ),
)


class MixpanelSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    project_token: Annotated[
        str,
        Meta(description="Project token: `$token` of profile updates; /import auth fallback."),
    ]
    api_secret: Annotated[
        str | None, Meta(description="Legacy project API secret for /import (Basic user name).")
    ] = None
    service_account_username: Annotated[
        str | None, Meta(description="Service account user for /import; needs project_id.")
    ] = None
    service_account_secret: Annotated[str | None, Meta(description="Service account secret.")] = (
        None
    )
    project_id: (
        Annotated[int, Meta(ge=1, description="Project id; required with a service account.")]
        | None
    ) = None
    region: Annotated[
        Literal["us", "eu", "in"], Meta(description="Data residency: api, api-eu or api-in host.")
    ] = "us"
    endpoint: Annotated[
        str | None, Meta(description="Override the API base URL (a proxy or a test fake).")
    ] = None
    gdpr_token: Annotated[
        str | None,
        Meta(description="GDPR API OAuth token (Personal Settings, Data & Privacy): lets "
             "regulations request deletions; without it a deletion says not_supported."),
    ] = None


#: The GDPR API's host per region (``POST /api/app/data-deletions/v3.0/?token=``).
GDPR_HOSTS = {"us": "https://mixpanel.com", "eu": "https://eu.mixpanel.com",
              "in": "https://in.mixpanel.com"}
#: The most distinct ids one deletion request may name (the API's documented limit).
MAX_DELETION_IDS = 2000


@register
class Mixpanel(DestinationType):
    """Events via the Import API (strict mode) and profiles via the Engage API."""

    name = "mixpanel"
    title = "Mixpanel"
    docs = "https://docs.mixpanel.com/reference/import-events"
    settings_type = MixpanelSettings
    settings_example: ClassVar[dict] = {
        "project_token": "0123456789abcdef0123456789abcdef",
        "api_secret": "fedcba9876543210fedcba9876543210",
        "region": "us",
    }
    secret_fields = frozenset({"project_token", "api_secret", "service_account_secret",
                               "gdpr_token"})
    replayable = True
    # vendors.md §1 Limits: "2 GB uncompressed JSON/min ≈ 30k events/s" per project.
    # 16 in flight: 50 requests/s of 600 events (1/50 s of budget) at ~300 ms each.
    default_rate_limit = RateLimit(events_per_second=30_000.0, max_in_flight=16)
    # vendors.md §1 Limits: ≤2000 events (and ≤2000 /engage updates) per request.
    # Request size: 10 MB in the current docs, 2 MB (2097152 in the sample 413)
    # in the OpenAPI text; we stay under the stricter 2 MiB with ~250 KB spare
    # for the `time`/`$insert_id`/`distinct_id` that build_request may add.
    batching = BatchLimits(max_events=2000, max_bytes=1_800_000, linger_seconds=1.0)
    dedupe_key = "$insert_id (messageId, or a stable hash of it; see module docs)"
    presets = (
        ActionSpec(
            name="Track events",
            trigger='type = "track"',
            mapping=_event_mapping({"@path": "$.event"}, {}),
            fields=_EVENT_FIELDS,
        ),
        ActionSpec(
            name="Page views",
            trigger='type = "page"',
            mapping=_event_mapping(
                "Loaded a Page", {"name": _when("$.name"), "category": _when("$.category")}
            ),
            fields=_EVENT_FIELDS,
        ),
        ActionSpec(
            name="Screen views",
            trigger='type = "screen"',
            mapping=_event_mapping("Loaded a Screen", {"name": _when("$.name")}),
            fields=_EVENT_FIELDS,
        ),
        ActionSpec(
            name="Identify user",
            trigger='type = "identify"',
            mapping={
                "$distinct_id": _DISTINCT_ID,
                "$set": _TRAITS_SET,
                "$ip": _when("$.context.ip"),
            },
            fields=(
                FieldSpec(
                    "$distinct_id", description="userId, else anonymousId (filled in if left out)."
                ),
                FieldSpec("$set", required=True, description="Traits to set on the profile."),
            ),
        ),
        audience_preset(
            {"$distinct_id": _DISTINCT_ID, "$set": TRAITS},
            (FieldSpec("$distinct_id", description="userId, else anonymousId."),
             FieldSpec("$set", required=True, description="`<segment key>: true|false`.")),
        ),
    )

    settings: MixpanelSettings

    @classmethod
    def check_settings(cls, settings: msgspec.Struct) -> None:
        assert isinstance(settings, MixpanelSettings)
        check_not_blank("project_token", settings.project_token, "0123456789abcdef")
        check_not_blank("api_secret", settings.api_secret, "fedcba9876543210")
        user, secret = settings.service_account_username, settings.service_account_secret
        if (user is None) != (secret is None):
            missing = "service_account_secret" if secret is None else "service_account_username"
            raise SettingsError(
                missing,
                f"setting `{missing}` is required with a service account; e.g. "
                '"service_account_username": "sa.user.mp-service-account", '
                '"service_account_secret": "…", "project_id": 1234567',
            )
        if user is not None and settings.project_id is None:
            raise SettingsError(
                "project_id",
                "setting `project_id` is required with a service account "
                f'(got service_account_username {show(user)}); e.g. "project_id": 1234567',
            )
        if settings.endpoint is not None:
            check_http_url("endpoint", settings.endpoint, "https://api.mixpanel.com")

    @property
    def base_url(self) -> str:
        return (self.settings.endpoint or HOSTS[self.settings.region]).rstrip("/")

    def deletion_requests(self, user_ids: list[str], anonymous_ids: list[str],
                          requester: str) -> list[OutboundRequest] | str:
        """GDPR API v3: `POST /api/app/data-deletions/v3.0/?token=<project token>` with
        `{"distinct_ids", "compliance_type": "GDPR"}` (up to 2000 ids) and the OAuth token
        as `Authorization: Bearer`. Every id: a distinct id is a user id or a device's
        anonymous id."""
        token = self.settings.gdpr_token
        if not token:
            return "set settings.gdpr_token: Mixpanel's GDPR API needs an OAuth token"
        ids = [*user_ids, *anonymous_ids]
        base = (origin_of(self.settings.endpoint) if self.settings.endpoint
                else GDPR_HOSTS[self.settings.region])
        url = (f"{base}/api/app/data-deletions/v3.0/"
               f"?token={quote(self.settings.project_token, safe='')}")
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        return [OutboundRequest("POST", url, headers,
                                json_bytes({"distinct_ids": ids[i:i + MAX_DELETION_IDS],
                                            "compliance_type": "GDPR"}), 1)
                for i in range(0, len(ids), MAX_DELETION_IDS)]

    def group_key(self, action: str, payload: dict[str, Any]) -> str:
        return "import" if _PROFILE_OPS.isdisjoint(payload) else "engage"

    def validate_item(self, action: str, payload: dict[str, Any]) -> str | None:
        if byte_len(payload) >= MAX_EVENT_BYTES:
            return "record is 1 MB or more; Mixpanel accepts events and profile updates <1 MB"
        if self.group_key(action, payload) == "engage":
            ops = [op for op in PROFILE_OPS if op in payload]
            if len(ops) > 1:
                return f"a profile update carries exactly one operation; got {', '.join(ops)}"
            return _check_id("$distinct_id", payload.get("$distinct_id"), required=True)
        name = payload.get("event")
        if not isinstance(name, str) or not name:
            return "`event` (the event name) must be a non-empty string"
        properties = payload.get("properties", {})
        if not isinstance(properties, dict):
            return "`properties` must be an object"
        if (reason := _check_id("distinct_id", properties.get("distinct_id"))) is not None:
            return reason
        when = properties.get("time")
        if when is not None:
            millis = to_epoch_ms(when)
            if not isinstance(millis, int):
                return f"properties.time must be epoch seconds, ms or ISO 8601; got {when!r}"
            if millis < MIN_TIME_MS:
                return f"properties.time {when!r} is before 1971-01-01, which Mixpanel rejects"
        return None

    def build_request(self, action: str, items: list[Item]) -> OutboundRequest:
        if self.group_key(action, items[0].payload) == "engage":
            records = [self._profile_record(item) for item in items]
            url = f"{self.base_url}/engage?verbose=1&ip=0"
            headers = {"Content-Type": "application/json"}
        else:
            records = [_event_record(item) for item in items]
            url = f"{self.base_url}/import?strict=1"
            if self.settings.project_id is not None:
                url += f"&project_id={self.settings.project_id}"
            headers = {"Content-Type": "application/json", "Authorization": self._import_auth()}
        return OutboundRequest("POST", url, headers, json_bytes(records), len(items))

    def _import_auth(self) -> str:
        s = self.settings
        if s.service_account_username and s.service_account_secret:
            return basic_auth(s.service_account_username, s.service_account_secret)
        return basic_auth(s.api_secret or s.project_token)

    def _profile_record(self, item: Item) -> dict:
        record = {"$token": self.settings.project_token, **item.payload}
        if record.get("$distinct_id") is None:
            record["$distinct_id"] = _identity(item.event)
        return record

    def classify(
        self, status: int, headers: Mapping[str, str], body: bytes, item_count: int
    ) -> Outcome:
        """/import strict mode answers 400 per record (valid ones are ingested);
        /engage answers 200 even on validation errors, with `verbose=1` as
        `{"status": 0, "error": ...}`, or plain `0` (vendors.md §1 Responses)."""
        if status == 200:
            text = body.strip()
            data = _decode(text)
            if text == b"0" or (isinstance(data, dict) and data.get("status") in (0, "0")):
                detail = data.get("error") if isinstance(data, dict) else None
                return Reject(f"Mixpanel accepted no record: {detail or body_text(body)}")
            return Sent()
        if status == 400:
            partial = _partial(_decode(body), item_count)
            if partial is not None:
                return partial
        return classify_status(status, headers, body, item_count, json_detail(body, "error"))

    def success_problem(self, status: int, body: bytes) -> str | None:
        """/import answers `{"code": 200, "num_records_imported": N, "status": "OK"}`,
        /engage `1` or, with `verbose=1`, `{"status": 1}` (vendors.md §1 Responses)."""
        text = body.strip()
        if text == b"1":
            return None
        data = _decode(text)
        if isinstance(data, dict) and ("status" in data or "code" in data):
            return None
        return f"the body is not Mixpanel's answer: {body_text(body, 200) or '(empty)'}"


def _decode(body: bytes) -> Any:
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None


def _partial(data: Any, item_count: int) -> Partial | None:
    """Partial from a strict-mode 400 listing `failed_records`, else None."""
    if not isinstance(data, dict) or not isinstance(data.get("failed_records"), list):
        return None
    rejected: dict[int, str] = {}
    for record in data["failed_records"]:
        if not isinstance(record, dict):
            continue
        index = record.get("index")
        if isinstance(index, int) and 0 <= index < item_count:
            field, message = record.get("field"), record.get("message")
            rejected[index] = f"Mixpanel rejected {field or 'the record'}: {message or record}"
    if not rejected:
        return None
    return Partial(frozenset(range(item_count)) - rejected.keys(), rejected)


def _identity(event: Mapping[str, Any]) -> Any:
    user_id = event.get("userId")
    return user_id if user_id not in (None, "") else event.get("anonymousId")


def _check_id(field: str, value: Any, required: bool = False) -> str | None:
    if value is None:
        return f"`{field}` is required" if required else None
    if not isinstance(value, str | int) or isinstance(value, bool):
        return f"`{field}` must be a string; got {value!r}"
    if str(value).strip().lower() in BANNED_IDS:
        return f"`{field}` {value!r} is a placeholder Mixpanel rejects"
    return None


def _event_record(item: Item) -> dict:
    """The /import record with the dedupe tuple filled in and normalised."""
    payload, event = item.payload, item.event
    raw = payload.get("properties")
    properties = dict(raw) if isinstance(raw, dict) else {}
    if properties.get("distinct_id") is None:
        properties["distinct_id"] = _identity(event)
    properties["time"] = to_epoch_ms(properties.get("time", event.get("timestamp")))
    if parse_time(properties["time"]) is None:
        properties["time"] = to_epoch_ms(event.get("timestamp"))
    raw_id = properties.get("$insert_id", event.get("messageId"))
    if raw_id is not None:
        properties["$insert_id"] = insert_id(str(raw_id))
    return {**payload, "properties": properties}
