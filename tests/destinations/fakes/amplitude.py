"""Fake Amplitude HTTP V2 / Batch / Identify APIs.

Follows vendors.md §2 "Amplitude (HTTP V2, Batch, Identify)"
(https://amplitude.com/docs/apis/analytics/http-v2,
https://amplitude.com/docs/apis/analytics/batch-event-upload,
https://amplitude.com/docs/apis/analytics/http-api-batching-retries):
- `POST /2/httpapi` and `POST /batch`: `Content-Type: application/json`
  required; body `{"api_key", "events", "options": {"min_id_length"}}`;
- >2000 events, or a body of 1 MB or more (httpapi) / over 20 MB (batch) → 413
  `{"code":413,"error":"Payload too large"}`;
- per event: `event_type`; `user_id` or `device_id` (strings ≥ min_id_length,
  default 5, not on the ban list); integer-ms `time`; no `[Amplitude] …` names.
  Any invalid event rejects the whole request: 400 with
  `events_with_invalid_fields` / `events_with_missing_fields` index maps;
- `throttle_ids` (users or devices) → 429 with `throttled_users`,
  `throttled_devices` and `throttled_events`; nothing is ingested;
- dedupe on `insert_id` over 7 days (fake clock: wall time); 200
  `{"code":200,"events_ingested":N,"payload_size_bytes":B,"server_upload_time":ms}`
  where N counts the events in the request (whether duplicates are counted is
  unconfirmed);
- `$identify` events and plain `user_properties` update `users`;
- `POST /identify`: form `api_key` + `identification` (object or array).
- User Privacy API v1 `POST /api/2/deletions/users` (Basic `api_key:secret_key`,
  else 401): `{"user_ids": [...≤100], "requester", "ignore_invalid_id"}` → 200
  `{"day", "status": "staging", "user_ids": [...]}`; the ids land in `deleted`.
"""

from __future__ import annotations

import json
import time
from typing import Any

from .base import FakeRequest, FakeResponse, FakeVendor

BANNED = {
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
DEDUPE_WINDOW_SECONDS = 7 * 86400


class FakeAmplitude(FakeVendor):
    name = "amplitude"

    def __init__(
        self,
        api_key: str = "amp-api-key-0123456789",
        secret_key: str = "amp-secret-key-0123456789",
        max_events: int = 2000,
        httpapi_max_bytes: int = 1_000_000,
        batch_max_bytes: int = 20_000_000,
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.secret_key = secret_key
        #: User ids deleted through the User Privacy API, with who asked.
        self.deleted: list[tuple[str, str]] = []
        self.max_events = max_events
        self.max_bytes = {"/2/httpapi": httpapi_max_bytes, "/batch": batch_max_bytes}
        self.throttle_ids: set[str] = set()
        self.users: dict[str, dict] = {}
        self.identifies: list[dict] = []
        self._insert_ids: dict[str, float] = {}

    def _reset_state(self) -> None:
        self.deleted.clear()
        self.throttle_ids.clear()
        self.users.clear()
        self.identifies.clear()
        self._insert_ids.clear()

    def destination_settings(self) -> dict:
        return {"api_key": self.api_key, "endpoint": self.url, "secret_key": self.secret_key}

    def failure_body(self, status: int) -> Any:
        if status == 429:
            return {
                "code": 429,
                "error": "Too many requests for some devices and users",
                "eps_threshold": 30,
                "throttled_devices": {},
                "throttled_users": {},
                "throttled_events": [],
            }
        return {"code": status, "error": f"injected failure {status}"}

    def handle(self, request: FakeRequest) -> FakeResponse:
        if request.method != "POST":
            return FakeResponse(404, {"code": 400, "error": "Invalid request path"})
        if request.path in self.max_bytes:
            return self._events(request)
        if request.path.rstrip("/") == "/identify":
            return self._identify(request)
        if request.path.rstrip("/") == "/api/2/deletions/users":
            return self._delete_users(request)
        return FakeResponse(400, {"code": 400, "error": "Invalid request path"})

    def _delete_users(self, request: FakeRequest) -> FakeResponse:
        if request.basic_auth() != (self.api_key, self.secret_key):
            return FakeResponse(401, {"error": "Invalid API key or secret key"})
        body = request.json()
        ids = body.get("user_ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not ids or len(ids) > 100:
            return FakeResponse(400, {"error": "user_ids: 1 to 100 ids"})
        self.deleted.extend((str(i), str(body.get("requester"))) for i in ids)
        return FakeResponse(200, {"day": "2026-01-01", "status": "staging",
                                  "user_ids": [{"user_id": i} for i in ids]})

    @staticmethod
    def _bad(error: str, **extra: Any) -> FakeResponse:
        return FakeResponse(400, {"code": 400, "error": error, **extra})

    def _events(self, request: FakeRequest) -> FakeResponse:
        if not request.body:
            return self._bad("Missing request body")
        if len(request.body) >= self.max_bytes[request.path] + (request.path == "/batch"):
            return FakeResponse(413, {"code": 413, "error": "Payload too large"})
        if "application/json" not in (request.header("content-type") or ""):
            return self._bad("Invalid JSON request body")
        try:
            body = request.json()
        except ValueError:
            return self._bad("Invalid JSON request body")
        if not isinstance(body, dict):
            return self._bad("Invalid JSON request body")
        if not body.get("api_key"):
            return self._bad("Request missing required field", missing_field="api_key")
        if body["api_key"] != self.api_key:
            return self._bad("Invalid API key")
        events = body.get("events")
        if not isinstance(events, list):
            return self._bad("Request missing required field", missing_field="events")
        if len(events) > self.max_events:
            return FakeResponse(413, {"code": 413, "error": "Payload too large"})
        options = body.get("options") or {}
        min_length = options.get("min_id_length") or 5
        invalid: dict[str, list[int]] = {}
        missing: dict[str, list[int]] = {}
        for index, event in enumerate(events):
            if not isinstance(event, dict):
                return self._bad("Invalid event JSON")
            for field, kind in self._problems(event, min_length):
                (invalid if kind == "invalid" else missing).setdefault(field, []).append(index)
        if invalid or missing:
            return self._bad(
                "Invalid field values on some events",
                events_with_invalid_fields=invalid,
                events_with_missing_fields=missing,
            )
        throttled = self._throttled(events)
        if throttled is not None:
            return throttled
        for event in events:
            self._ingest(event)
        return FakeResponse(
            200,
            {
                "code": 200,
                "events_ingested": len(events),
                "payload_size_bytes": len(request.body),
                "server_upload_time": int(time.time() * 1000),
            },
        )

    @staticmethod
    def _problems(event: dict, min_length: int) -> list[tuple[str, str]]:
        problems = []
        event_type = event.get("event_type")
        if not isinstance(event_type, str) or not event_type:
            problems.append(("event_type", "missing"))
        elif event_type.startswith("[Amplitude]"):
            problems.append(("event_type", "invalid"))
        usable, bad = 0, []
        for field in ("user_id", "device_id"):
            value = event.get(field)
            if value is None:
                continue
            ok = isinstance(value, str) and len(value) >= min_length
            ok = ok and value.strip().lower() not in BANNED
            if ok:
                usable += 1
            else:
                bad.append(field)
        if not usable:
            problems.extend((field, "invalid") for field in bad)
            if not bad:
                problems.append(("user_id", "missing"))
        when = event.get("time")
        if when is not None and (not isinstance(when, int) or isinstance(when, bool)):
            problems.append(("time", "invalid"))
        return problems

    def _throttled(self, events: list[dict]) -> FakeResponse | None:
        users: dict[str, int] = {}
        devices: dict[str, int] = {}
        indexes = []
        for index, event in enumerate(events):
            user, device = event.get("user_id"), event.get("device_id")
            if user in self.throttle_ids:
                users[user] = 31
                indexes.append(index)
            elif device in self.throttle_ids:
                devices[device] = 31
                indexes.append(index)
        if not indexes:
            return None
        return FakeResponse(
            429,
            {
                "code": 429,
                "error": "Too many requests for some devices and users",
                "eps_threshold": 30,
                "throttled_devices": devices,
                "throttled_users": users,
                "throttled_events": indexes,
                "exceeded_daily_quota_users": {},
                "exceeded_daily_quota_devices": {},
            },
        )

    def _ingest(self, event: dict) -> None:
        now = time.time()
        insert_id = event.get("insert_id")
        with self._lock:
            if insert_id is not None:
                seen = self._insert_ids.get(insert_id)
                if seen is not None and now - seen < DEDUPE_WINDOW_SECONDS:
                    self._duplicates += 1
                    return
                self._insert_ids[insert_id] = now
                key = None
            elif event.get("event_id") is not None:
                key = ("event_id", event["event_id"], event.get("time"), event.get("device_id"))
            else:
                key = None
            if self.store(key, event):
                self._apply_user_properties(event)

    def _apply_user_properties(self, event: dict) -> None:
        who = event.get("user_id") or event.get("device_id")
        props = event.get("user_properties")
        if not who or not isinstance(props, dict):
            return
        user = self.users.setdefault(who, {})
        for op, value in props.items():
            if op == "$set" and isinstance(value, dict):
                user.update(value)
            elif op == "$setOnce" and isinstance(value, dict):
                for name, item in value.items():
                    user.setdefault(name, item)
            elif op == "$unset" and isinstance(value, dict | list):
                for name in value:
                    user.pop(name, None)
            elif not op.startswith("$"):
                user[op] = value  # plain keys act as $set

    def _identify(self, request: FakeRequest) -> FakeResponse:
        form = request.form()
        if form.get("api_key", [""])[0] != self.api_key:
            return FakeResponse(400, {"code": 400, "error": "Invalid API key"})
        try:
            identification = json.loads(form.get("identification", [""])[0])
        except ValueError:
            return FakeResponse(400, {"code": 400, "error": "missing_event"})
        items = identification if isinstance(identification, list) else [identification]
        with self._lock:
            for item in items:
                if not isinstance(item, dict) or not (item.get("user_id") or item.get("device_id")):
                    return FakeResponse(400, {"code": 400, "error": "missing_event"})
            for item in items:
                self.identifies.append(item)
                self._apply_user_properties(item)
        return FakeResponse(200, "success")
