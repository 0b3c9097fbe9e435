"""Fake Customer.io Track API (v1, plus v2 batch/entity).

Follows vendors.md §4 "Customer.io Track API" (https://docs.customer.io/api/track/,
the Track OpenAPI docs.customer.io/files/journeys-track.json,
https://docs.customer.io/journeys/invalid-api-requests):
- Basic auth `site_id:api_key` on every call → 401 otherwise; `GET /auth`;
- `PUT /api/v1/customers/{id}` (id URL-decoded, ≤150 bytes): flat attributes
  (string/number/bool/null), ≤300, names ≤150 bytes, values ≤1000 bytes;
  `_update: true` never creates; `_timestamp` (unix s) orders updates per
  attribute — an older update does not overwrite a newer value; `created_at`
  and `_timestamp` must be integers → `people`;
- `POST /api/v1/customers/{id}/events` and `POST /api/v1/events` (anonymous,
  needs `anonymous_id`): `name` required (≤100 bytes), integer-second
  `timestamp`, `type` event|page|screen, `data` ≤100,000 bytes; dedupe on the
  event `id` → `received` (with `customer_id` or `anonymous_id`);
- errors `{"meta": {"error": "…"}}`; success `{}`;
- `POST /api/v2/batch` (≤500 KB, each entity ≤32 KB): per-item errors → 207
  `{"errors": [{"batch_index", "reason", "field", "message"}]}`, others applied;
  `POST /api/v2/entity` (≤32 KB) → 400 `{"errors": [...]}` when invalid;
- `DELETE /api/v1/customers/{identifier}` ("Delete a customer": removes them and all
  their information; 200 `{}`, also for an unknown id) → the id in `deleted`.
"""

from __future__ import annotations

import json
from typing import Any

from .base import FakeRequest, FakeResponse, FakeVendor

MAX_ID_BYTES = 150
MAX_NAME_BYTES = 150
MAX_VALUE_BYTES = 1000
MAX_ATTRIBUTES = 300
MAX_EVENT_NAME_BYTES = 100
MAX_DATA_BYTES = 100_000
MAX_ENTITY_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
V2_ACTIONS = ("identify", "event", "page", "screen", "delete")


def _size(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode())
    return len(json.dumps(value, separators=(",", ":")).encode())


def _error(message: str, status: int = 400) -> FakeResponse:
    return FakeResponse(status, {"meta": {"error": message}})


class FakeCustomerIo(FakeVendor):
    name = "customerio"

    def __init__(
        self, site_id: str = "cio-site-0123456789", api_key: str = "cio-key-0123456789"
    ) -> None:
        super().__init__()
        self.site_id = site_id
        self.api_key = api_key
        self.people: dict[str, dict] = {}
        self.identifies: list[tuple[str, dict]] = []
        self._attribute_times: dict[tuple[str, str], int] = {}
        #: Identifiers deleted through `DELETE /api/v1/customers/{id}`, in order.
        self.deleted: list[str] = []

    def _reset_state(self) -> None:
        self.deleted.clear()
        self.people.clear()
        self.identifies.clear()
        self._attribute_times.clear()

    def destination_settings(self) -> dict:
        return {"site_id": self.site_id, "api_key": self.api_key, "endpoint": self.url}

    def failure_body(self, status: int) -> Any:
        return {"meta": {"error": f"injected failure {status}"}}

    def handle(self, request: FakeRequest) -> FakeResponse:
        if request.basic_auth() != (self.site_id, self.api_key):
            return _error("Unauthorized request", 401)
        parts = request.path_segments()
        method = request.method
        if method == "GET" and parts == ["auth"]:
            return FakeResponse(200, {})
        if parts[:2] == ["api", "v1"]:
            rest = parts[2:]
            if method == "PUT" and len(rest) == 2 and rest[0] == "customers":
                return self._identify(rest[1], request)
            if method == "DELETE" and len(rest) == 2 and rest[0] == "customers":
                self.deleted.append(rest[1])
                self.people.pop(rest[1], None)
                return FakeResponse(200, {})
            if (
                method == "POST"
                and len(rest) == 3
                and rest[0] == "customers"
                and rest[2] == "events"
            ):
                return self._event(request, customer_id=rest[1])
            if method == "POST" and rest == ["events"]:
                return self._event(request, customer_id=None)
        if method == "POST" and parts == ["api", "v2", "batch"]:
            return self._v2_batch(request)
        if method == "POST" and parts == ["api", "v2", "entity"]:
            return self._v2_entity(request)
        return _error(f"no route for {method} {request.path}", 404)

    @staticmethod
    def _object(request: FakeRequest) -> dict | None:
        try:
            body = request.json() if request.body else {}
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    # v1 ----------------------------------------------------------------------------------

    def _identify(self, customer_id: str, request: FakeRequest) -> FakeResponse:
        body = self._object(request)
        if body is None:
            return _error("request body must be a JSON object")
        problem = self._check_person(customer_id, body)
        if problem is not None:
            return _error(problem)
        self.upsert(customer_id, body)
        return FakeResponse(200, {})

    def _check_person(self, customer_id: str, attributes: dict) -> str | None:
        if not customer_id or _size(customer_id) > MAX_ID_BYTES:
            return f"identifier must be 1..{MAX_ID_BYTES} bytes"
        if len(attributes) > MAX_ATTRIBUTES:
            return f"too many attributes (max {MAX_ATTRIBUTES})"
        for name, value in attributes.items():
            if _size(name) > MAX_NAME_BYTES:
                return f"attribute name too long: {name[:20]}"
            if isinstance(value, dict | list):
                return f"attribute {name} must be a string, number or boolean"
            if isinstance(value, str) and _size(value) > MAX_VALUE_BYTES:
                return f"attribute {name} value too long"
        for name in ("created_at", "_timestamp"):
            value = attributes.get(name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                return f"{name} must be a unix timestamp in seconds"
        return None

    def upsert(self, customer_id: str, attributes: dict) -> None:
        """PUT semantics: create or update; `_timestamp` orders per attribute."""
        with self._lock:
            self.identifies.append((customer_id, attributes))
            person = self.people.get(customer_id)
            if person is None:
                if attributes.get("_update") is True:
                    return
                person = self.people[customer_id] = {"id": customer_id}
            stamp = attributes.get("_timestamp")
            for name, value in attributes.items():
                if name in ("_timestamp", "_update"):
                    continue
                key = (customer_id, name)
                if stamp is not None:
                    if stamp < self._attribute_times.get(key, stamp):
                        continue
                    self._attribute_times[key] = stamp
                person[name] = value

    def _event(self, request: FakeRequest, customer_id: str | None) -> FakeResponse:
        body = self._object(request)
        if body is None:
            return _error("request body must be a JSON object")
        if customer_id is not None and (not customer_id or _size(customer_id) > MAX_ID_BYTES):
            return _error(f"identifier must be 1..{MAX_ID_BYTES} bytes")
        if customer_id is None and not body.get("anonymous_id"):
            return _error("anonymous_id must be present")
        problem = self._check_event(body)
        if problem is not None:
            return _error(problem)
        owner = {"customer_id": customer_id} if customer_id is not None else {}
        record = {**owner, **body}
        self.store(("id", body["id"]) if body.get("id") else None, record)
        return FakeResponse(200, {})

    @staticmethod
    def _check_event(body: dict) -> str | None:
        name = body.get("name")
        if not isinstance(name, str) or not name:
            return "name attribute must be present"
        if _size(name) > MAX_EVENT_NAME_BYTES:
            return f"event name longer than {MAX_EVENT_NAME_BYTES} bytes"
        if body.get("type", "event") not in ("event", "page", "screen"):
            return "type must be event, page or screen"
        stamp = body.get("timestamp")
        if stamp is not None and (not isinstance(stamp, int) or isinstance(stamp, bool)):
            return "timestamp must be a unix timestamp in seconds"
        data = body.get("data")
        if data is not None and (not isinstance(data, dict) or _size(data) > MAX_DATA_BYTES):
            return f"data must be an object of at most {MAX_DATA_BYTES} bytes"
        return None

    # v2 ----------------------------------------------------------------------------------

    def _v2_batch(self, request: FakeRequest) -> FakeResponse:
        if len(request.body) > MAX_BATCH_BYTES:
            return FakeResponse(
                400,
                {
                    "errors": [
                        {"reason": "too_large", "field": "batch", "message": "batch exceeds 500KB"}
                    ]
                },
            )
        body = self._object(request)
        if body is None or not isinstance(body.get("batch"), list):
            return FakeResponse(
                400,
                {
                    "errors": [
                        {"reason": "invalid", "field": "batch", "message": "batch must be an array"}
                    ]
                },
            )
        errors = []
        for index, entity in enumerate(body["batch"]):
            problem = self._v2_apply(entity)
            if problem is not None:
                errors.append({"batch_index": index, **problem})
        return FakeResponse(207, {"errors": errors}) if errors else FakeResponse(200, {})

    def _v2_entity(self, request: FakeRequest) -> FakeResponse:
        body = self._object(request)
        if body is None:
            return FakeResponse(
                400,
                {
                    "errors": [
                        {"reason": "invalid", "field": "", "message": "body must be an object"}
                    ]
                },
            )
        problem = self._v2_apply(body)
        return FakeResponse(400, {"errors": [problem]}) if problem else FakeResponse(200, {})

    def _v2_apply(self, entity: Any) -> dict | None:
        def bad(field: str, message: str) -> dict:
            return {"reason": "invalid", "field": field, "message": message}

        if not isinstance(entity, dict):
            return bad("", "entity must be an object")
        if _size(entity) > MAX_ENTITY_BYTES:
            return bad("", "entity exceeds 32KB")
        if entity.get("type") != "person":
            return bad("type", "only person entities are supported by the fake")
        identifiers = entity.get("identifiers")
        if not isinstance(identifiers, dict) or len(identifiers) != 1:
            return bad("identifiers", "exactly one of id, email, phone, cio_id")
        ((kind, value),) = identifiers.items()
        if kind not in ("id", "email", "phone", "cio_id"):
            return bad("identifiers", f"unknown identifier {kind}")
        action = entity.get("action")
        if action not in V2_ACTIONS:
            return bad("action", f"unsupported action {action!r}")
        person_id = str(value)
        if action == "identify":
            attributes = dict(entity.get("attributes") or {})
            if entity.get("timestamp") is not None:
                attributes["_timestamp"] = entity["timestamp"]
            problem = self._check_person(person_id, attributes)
            if problem is not None:
                return bad("attributes", problem)
            self.upsert(person_id, attributes)
        elif action == "delete":
            with self._lock:
                self.people.pop(person_id, None)
        else:
            event = {
                "name": entity.get("name"),
                "type": "event" if action == "event" else action,
                "id": entity.get("id"),
                "timestamp": entity.get("timestamp"),
                "data": entity.get("attributes") or {},
            }
            event = {k: v for k, v in event.items() if v is not None}
            problem = self._check_event(event)
            if problem is not None:
                return bad("name", problem)
            self.store(
                ("id", event["id"]) if event.get("id") else None,
                {"customer_id": person_id, **event},
            )
        return None
