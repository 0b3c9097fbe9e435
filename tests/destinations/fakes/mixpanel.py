"""Fake Mixpanel Ingestion API (/import, /track, /engage).

Follows vendors.md §1 "Mixpanel (Ingestion API)"
(https://docs.mixpanel.com/reference/import-events, mixpanel/docs
`openapi/src/ingestion.openapi.yaml`, mixpanel-python):
- bodies: JSON array (or one object), NDJSON, form `data=<JSON>`, gzip;
- `/import` needs Basic auth: API secret or project token as user with an
  empty password, or a service account `user:secret` plus `?project_id=`
  → else 401 `{"code":401,"error":"Invalid credentials",...}`;
- `/import` limits: >2000 events or a body over 2 MiB → 413 (docs conflict:
  10 MB vs 2 MB; the fake enforces the stricter 2097152 bytes);
- per event (strict): `time` int s/ms, ≥1971-01-01, ≤1 h in the future;
  `distinct_id` string, not a placeholder; `$insert_id` ≤36 `[A-Za-z0-9-]`,
  not a placeholder. Valid events are ingested; with `strict=1` invalid ones
  come back as 400 `failed_records` with `index`, `num_records_imported`;
- dedupe on (event, distinct_id, time, $insert_id), time normalised to ms;
- `/track`: token in `properties.token`, events older than 5 days refused;
- `/engage`: `{"$token","$distinct_id", <one op>}`; answers 200 `1`/`0` or,
  with `verbose=1`, `{"status":1|0,"error":…}`; ops applied to `profiles`;
- injected failures use the documented bodies (429 has no Retry-After unless
  the test asks for one).
- GDPR API v3 `POST /api/app/data-deletions/v3.0/?token=<project token>` with
  `Authorization: Bearer <OAuth token>` (else 401) and `{"distinct_ids": [...≤2000],
  "compliance_type": "GDPR"|"CCPA"}` → 200 `{"status": "ok", "results": {"task_id"}}`;
  the ids land in `deleted`.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from .base import FakeRequest, FakeResponse, FakeVendor

BANNED = {
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
INSERT_ID = re.compile(r"^[A-Za-z0-9-]{1,36}$")
MIN_TIME_MS = 31_536_000_000
OPS = ("$set", "$set_once", "$add", "$union", "$append", "$remove", "$unset", "$delete")
STATUS_TEXT = {
    400: "Bad Request",
    401: "Unauthorized",
    413: "Request Entity Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class FakeMixpanel(FakeVendor):
    name = "mixpanel"

    def __init__(
        self,
        api_secret: str = "mp-api-secret-0123456789",
        project_token: str = "mp-project-token-0123456789",
        service_accounts: dict[str, str] | None = None,
        project_id: int = 1234567,
        max_events: int = 2000,
        max_bytes: int = 2_097_152,
        gdpr_token: str = "mp-gdpr-oauth-token-0123456789",
    ) -> None:
        super().__init__()
        self.gdpr_token = gdpr_token
        #: Distinct ids deleted through the GDPR API, in order.
        self.deleted: list[str] = []
        self.api_secret = api_secret
        self.project_token = project_token
        self.service_accounts = service_accounts or {"sa.user.fake": "sa-secret-0123456789"}
        self.project_id = project_id
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.profiles: dict[str, dict] = {}
        self.profile_updates: list[dict] = []
        self.profile_errors: list[tuple[dict, str]] = []

    def _reset_state(self) -> None:
        self.deleted.clear()
        self.profiles.clear()
        self.profile_updates.clear()
        self.profile_errors.clear()

    def destination_settings(self) -> dict:
        return {
            "project_token": self.project_token,
            "api_secret": self.api_secret,
            "endpoint": self.url,
            "gdpr_token": self.gdpr_token,
        }

    def failure_body(self, status: int) -> Any:
        error = {
            429: "Project exceeded rate limits. Please retry the request with exponential backoff.",
        }.get(status, f"injected failure {status}")
        return {"code": status, "error": error, "status": STATUS_TEXT.get(status, "Error")}

    # parsing -----------------------------------------------------------------------------

    @staticmethod
    def _records(request: FakeRequest) -> list[Any] | None:
        content_type = request.header("content-type") or ""
        try:
            if "x-www-form-urlencoded" in content_type:
                data = json.loads(request.form().get("data", ["null"])[0])
            elif "ndjson" in content_type:
                lines = request.body.decode().splitlines()
                data = [json.loads(line) for line in lines if line.strip()]
            else:
                data = request.json()
        except ValueError:
            return None
        if isinstance(data, dict):
            return [data]
        return data if isinstance(data, list) else None

    def _delete(self, request: FakeRequest) -> FakeResponse:
        if request.header("authorization") != f"Bearer {self.gdpr_token}":
            return FakeResponse(401, {"status": "error", "error": "invalid OAuth token"})
        if request.query_one("token") != self.project_token:
            return FakeResponse(400, {"status": "error", "error": "unknown project token"})
        body = request.json()
        ids = body.get("distinct_ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not ids or len(ids) > 2000 \
                or body.get("compliance_type", "GDPR") not in ("GDPR", "CCPA"):
            return FakeResponse(400, {"status": "error", "error": "bad deletion request"})
        self.deleted.extend(str(i) for i in ids)
        return FakeResponse(200, {"status": "ok", "results": {"task_id": len(self.deleted)}})

    def handle(self, request: FakeRequest) -> FakeResponse:
        if request.method != "POST":
            return FakeResponse(405, "POST only")
        route = request.path.rstrip("/")
        if route == "/import":
            return self._import(request)
        if route == "/track":
            return self._track(request)
        if route == "/engage":
            return self._engage(request)
        if route == "/api/app/data-deletions/v3.0":
            return self._delete(request)
        return FakeResponse(404, {"error": f"unknown path {request.path}", "status": "error"})

    # /import -----------------------------------------------------------------------------

    def _authorized(self, request: FakeRequest) -> bool:
        auth = request.basic_auth()
        if auth is None:
            return False
        user, password = auth
        if password == "" and user in (self.api_secret, self.project_token):
            return True
        return self.service_accounts.get(user) == password and request.query_one(
            "project_id"
        ) == str(self.project_id)

    def _import(self, request: FakeRequest) -> FakeResponse:
        if not self._authorized(request):
            return FakeResponse(
                401, {"code": 401, "error": "Invalid credentials", "status": "Unauthorized"}
            )
        if len(request.body) > self.max_bytes:
            return FakeResponse(
                413,
                {
                    "code": 413,
                    "error": f"request exceeds max limit of {self.max_bytes} bytes",
                    "status": "Request Entity Too Large",
                },
            )
        records = self._records(request)
        if records is None:
            return FakeResponse(
                400, {"code": 400, "error": "unable to parse body", "status": "Bad Request"}
            )
        if len(records) > self.max_events:
            return FakeResponse(
                413,
                {
                    "code": 413,
                    "error": f"request exceeds max limit of {self.max_events} events",
                    "status": "Request Entity Too Large",
                },
            )
        failed = []
        imported = 0
        for index, record in enumerate(records):
            problem = self._check_event(record)
            if problem is not None:
                field, message = problem
                insert_id = (
                    (record.get("properties") or {}).get("$insert_id")
                    if isinstance(record, dict)
                    else None
                )
                failed.append(
                    {"index": index, "insert_id": insert_id, "field": field, "message": message}
                )
                continue
            imported += 1
            self._ingest(record)
        if failed and request.query_one("strict") == "1":
            return FakeResponse(
                400,
                {
                    "code": 400,
                    "error": "some data points in the request failed validation",
                    "status": "Bad Request",
                    "num_records_imported": imported,
                    "failed_records": failed,
                },
            )
        return FakeResponse(200, {"code": 200, "num_records_imported": imported, "status": "OK"})

    def _check_event(self, record: Any, now: float | None = None) -> tuple[str, str] | None:
        now = time.time() if now is None else now
        if not isinstance(record, dict) or not isinstance(record.get("properties"), dict):
            return "properties", "properties must be an object"
        if not isinstance(record.get("event"), str) or not record["event"]:
            return "event", "event name is required"
        props = record["properties"]
        when = props.get("time")
        if not isinstance(when, int) or isinstance(when, bool):
            return "properties.time", "'properties.time' is invalid: must be an integer"
        millis = when if when >= 100_000_000_000 else when * 1000
        if millis < MIN_TIME_MS or millis > (now + 3600) * 1000:
            return "properties.time", "'properties.time' is out of range"
        distinct_id = props.get("distinct_id")
        if not isinstance(distinct_id, str | int) or isinstance(distinct_id, bool):
            return "properties.distinct_id", "'properties.distinct_id' is required"
        if str(distinct_id).lower() in BANNED:
            return "properties.distinct_id", "'properties.distinct_id' is a placeholder"
        insert_id = props.get("$insert_id")
        if not isinstance(insert_id, str) or not INSERT_ID.match(insert_id):
            return "properties.$insert_id", "'properties.$insert_id' is invalid"
        if insert_id.lower() in BANNED:
            return "properties.$insert_id", "'properties.$insert_id' is a placeholder"
        return None

    def _ingest(self, record: dict) -> bool:
        props = record["properties"]
        when = props["time"]
        millis = when if when >= 100_000_000_000 else when * 1000
        key = (record["event"], str(props["distinct_id"]), millis, props["$insert_id"])
        return self.store(key, record)

    # /track ------------------------------------------------------------------------------

    def _track(self, request: FakeRequest) -> FakeResponse:
        records = self._records(request) or []
        accepted = 0
        for record in records:
            props = record.get("properties") if isinstance(record, dict) else None
            if not isinstance(props, dict) or props.get("token") != self.project_token:
                continue
            if self._check_event(record) is not None:
                continue
            when = props["time"]
            millis = when if when >= 100_000_000_000 else when * 1000
            if millis < (time.time() - 5 * 86400) * 1000:
                continue  # /track takes the last 5 days only
            self._ingest(record)
            accepted += 1
        return self._simple_answer(request, accepted > 0, "no valid events")

    # /engage -----------------------------------------------------------------------------

    def _engage(self, request: FakeRequest) -> FakeResponse:
        records = self._records(request)
        if records is None:
            return self._simple_answer(request, False, "unable to parse body")
        valid = 0
        for record in records:
            problem = self._check_update(record)
            with self._lock:
                if problem is not None:
                    self.profile_errors.append((record, problem))
                    continue
                self.profile_updates.append(record)
                self._apply(record)
            valid += 1
        return self._simple_answer(request, valid > 0, "no valid profile updates")

    def _check_update(self, record: Any) -> str | None:
        if not isinstance(record, dict):
            return "update must be an object"
        if record.get("$token") != self.project_token:
            return "invalid $token"
        distinct_id = record.get("$distinct_id")
        if distinct_id is None or str(distinct_id).lower() in BANNED:
            return "invalid $distinct_id"
        ops = [op for op in OPS if op in record]
        if len(ops) != 1:
            return f"exactly one operation required, got {ops}"
        return None

    def _apply(self, record: dict) -> None:
        key = str(record["$distinct_id"])
        profile = self.profiles.setdefault(key, {})
        for op in OPS:
            if op not in record:
                continue
            value = record[op]
            if op == "$set":
                profile.update(value)
            elif op == "$set_once":
                for name, item in value.items():
                    profile.setdefault(name, item)
            elif op == "$add":
                for name, item in value.items():
                    profile[name] = profile.get(name, 0) + item
            elif op in ("$union", "$append"):
                for name, items in value.items():
                    current = profile.setdefault(name, [])
                    for item in items if op == "$union" else [items]:
                        if op == "$append" or item not in current:
                            current.append(item)
            elif op == "$remove":
                for name, item in value.items():
                    if item in profile.get(name, []):
                        profile[name].remove(item)
            elif op == "$unset":
                for name in value:
                    profile.pop(name, None)
            elif op == "$delete":
                self.profiles.pop(key, None)

    @staticmethod
    def _simple_answer(request: FakeRequest, ok: bool, error: str) -> FakeResponse:
        if request.query_one("verbose") == "1":
            return FakeResponse(200, {"status": 1 if ok else 0, "error": None if ok else error})
        return FakeResponse(200, "1" if ok else "0")
