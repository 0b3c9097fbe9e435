"""Fake PostHog capture API.

Follows vendors.md §3 "PostHog (capture)" (https://posthog.com/docs/api/capture,
PostHog/posthog `rust/capture/src/api.rs`, posthog-python `request.py`):
- `POST /i/v0/e/`, `/capture/` (one event, or a `batch`) and `/batch/`; gzip;
- project key as `api_key` in the body (or on every event); missing or
  mixed keys, or a wrong key → 401;
- bodies of 20 MB or more → 413 ("body <20 MB by default");
- `distinct_id` at the top level or in `properties` (top level wins); numbers
  are stringified; missing/null/blank → 400 for the whole request; a missing
  event name, an empty batch, an event over 1 MB → 400 (plain-text reason);
- an invalid `uuid` drops that event (still 200), listed in `dropped`;
- dedupe by `uuid` is best-effort at PostHog: `all_events` keeps every copy
  (what ClickHouse may show before merges), `received` is the uuid-collapsed
  view and `duplicates` counts collapsed copies;
- `$set`/`$set_once` (in `properties`, including `$identify`) apply to
  `persons` in arrival order; `historical_migration` is kept per request in
  `migrations`; 200 `{"status": 1}`.
- persons API `POST /api/projects/{project_id}/persons/bulk_delete/` with
  `Authorization: Bearer <personal API key>` (else 401) and `{"distinct_ids":
  [...≤1000], "delete_events"}` → 202 `{"persons_found", "persons_deleted"}`; the ids
  land in `deleted`.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from .base import FakeRequest, FakeResponse, FakeVendor

PATHS = ("/i/v0/e", "/capture", "/batch", "/e", "/track")
MAX_EVENT_BYTES = 1024 * 1024


class FakePostHog(FakeVendor):
    name = "posthog"

    def __init__(
        self, api_key: str = "phc_fake_0123456789abcdef", max_bytes: int = 20_000_000,
        personal_api_key: str = "phx_fake_personal_0123456789", project_id: str = "1234",
    ) -> None:
        super().__init__()
        self.personal_api_key = personal_api_key
        self.project_id = project_id
        #: Distinct ids deleted through the persons API (with delete_events), in order.
        self.deleted: list[tuple[str, bool]] = []
        self.api_key = api_key
        self.max_bytes = max_bytes
        self.all_events: list[dict] = []
        self.dropped: list[tuple[str, dict]] = []
        self.persons: dict[str, dict] = {}
        self.migrations: list[bool] = []

    def _reset_state(self) -> None:
        self.deleted.clear()
        self.all_events.clear()
        self.dropped.clear()
        self.persons.clear()
        self.migrations.clear()

    def destination_settings(self) -> dict:
        return {"api_key": self.api_key, "host": self.url,
                "personal_api_key": self.personal_api_key, "project_id": self.project_id}

    def failure_body(self, status: int) -> Any:
        return f"injected failure {status}"

    def _bulk_delete(self, request: FakeRequest) -> FakeResponse:
        if request.header("authorization") != f"Bearer {self.personal_api_key}":
            return FakeResponse(401, {"detail": "Invalid personal API key."})
        body = request.json()
        ids = body.get("distinct_ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not ids or len(ids) > 1000:
            return FakeResponse(400, {"detail": "distinct_ids: 1 to 1000 ids"})
        found = [i for i in ids if i in self.persons]
        self.deleted.extend((str(i), bool(body.get("delete_events"))) for i in ids)
        for i in found:
            self.persons.pop(i, None)
        return FakeResponse(202, {"persons_found": len(found), "persons_deleted": len(found)})

    def handle(self, request: FakeRequest) -> FakeResponse:
        if request.method == "POST" and request.path == (
                f"/api/projects/{self.project_id}/persons/bulk_delete/"):
            return self._bulk_delete(request)
        if request.method != "POST":
            return FakeResponse(405, "POST only")
        if request.path.rstrip("/") not in PATHS:
            return FakeResponse(404, f"unknown path {request.path}")
        if len(request.body) >= self.max_bytes:
            return FakeResponse(413, "payload too large")
        try:
            body = request.json()
        except ValueError:
            return FakeResponse(400, "failed to decode body")
        if not isinstance(body, dict):
            return FakeResponse(400, "body must be an object")
        if "batch" in body:
            events = body["batch"]
            if not isinstance(events, list) or not events:
                return FakeResponse(400, "empty batch")
        else:
            events = [body]
        keys = {body.get("api_key")} if body.get("api_key") else set()
        if not keys:
            keys = {e.get("api_key") if isinstance(e, dict) else None for e in events}
        if len(keys) != 1 or None in keys:
            return FakeResponse(401, "missing or mixed api_key")
        if keys != {self.api_key}:
            return FakeResponse(401, "invalid api_key")
        checked = []
        for event in events:
            record, problem = self._check(event)
            if problem is not None:
                return FakeResponse(400, problem)
            checked.append(record)
        with self._lock:
            self.migrations.append(bool(body.get("historical_migration")))
            for record in checked:
                self._accept(record)
        return FakeResponse(200, {"status": 1})

    @staticmethod
    def _check(event: Any) -> tuple[dict, str | None]:
        if not isinstance(event, dict):
            return {}, "event must be an object"
        if not isinstance(event.get("event"), str) or not event["event"]:
            return event, "missing event name"
        properties = event.get("properties") or {}
        if not isinstance(properties, dict):
            return event, "properties must be an object"
        distinct_id = event.get("distinct_id", properties.get("distinct_id"))
        if isinstance(distinct_id, int | float) and not isinstance(distinct_id, bool):
            distinct_id = str(distinct_id)  # numbers and objects are stringified
        elif isinstance(distinct_id, dict | list):
            distinct_id = json.dumps(distinct_id)
        if not isinstance(distinct_id, str) or not distinct_id.strip():
            return event, "missing or empty distinct_id"
        if len(json.dumps(event)) > MAX_EVENT_BYTES:
            return event, "event too big"
        return {**event, "distinct_id": distinct_id[:200], "properties": properties}, None

    def _accept(self, record: dict) -> None:
        raw_uuid = record.get("uuid")
        key = None
        if raw_uuid is not None:
            try:
                key = ("uuid", str(uuid.UUID(str(raw_uuid))))
            except ValueError:
                self.dropped.append(("invalid uuid", record))
                return
        self.all_events.append(record)
        if self.store(key, record):
            self._apply_person(record)

    def _apply_person(self, record: dict) -> None:
        person = self.persons.setdefault(record["distinct_id"], {})
        properties = record["properties"]
        if isinstance(properties.get("$set"), dict):
            person.update(properties["$set"])
        if isinstance(properties.get("$set_once"), dict):
            for name, value in properties["$set_once"].items():
                person.setdefault(name, value)
