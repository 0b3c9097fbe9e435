"""The classic Customer.io Track API for ``track`` sources, stored as canonical events.

``PUT /api/v1/customers/{id}`` becomes an identify, ``POST /api/v1/customers/{id}/events``
a track/page/screen for that person and ``POST /api/v1/events`` an anonymous one. Times
are Unix seconds; an event's optional ``id`` is its dedupe key (it becomes the
``messageId``). Each stored event records where it came from in ``context.millpond``.

Bodies are JSON or, as in Customer.io's own examples (``curl -d name=purchased
-d data[price]=23.45 -d timestamp=1359389415``), HTML forms with Rails-style nested keys.
A form's values are text (it cannot tell a number from a string) and are stored as
text; ``timestamp`` and ``_timestamp`` are read as Unix seconds either way. Both kinds
go through the same validation and give the same errors.
"""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import unquote

from millpond import metrics
from millpond.collector.request import (
    FORM_TYPE,
    check_content_type,
    content_type,
    credentials,
    decode_form,
    decode_json,
    read_body,
    send_json,
)
from millpond.collector.validation import MessageRejected, body_has_huge_int, normalize
from millpond.errors import BadRequest, Forbidden, NotFound, TooLarge, Unauthorized
from millpond.regulations.blocklist import Blocklist, screen_out
from millpond.sources.service import SourceService
from millpond.storage.contracts import EventLog
from millpond.storage.models import Source
from millpond.timeutil import BadTimestamp, format_ms, unix_seconds_to_ms

_EVENT_TYPES = {"event": "track", "page": "page", "screen": "screen"}
_EVENT_FIELDS = frozenset({"name", "data", "timestamp", "id", "type", "anonymous_id"})
MAX_ID_BYTES = 150


class TrackAPI:
    def __init__(self, log: EventLog, sources: SourceService,
                 blocklist: Blocklist | None = None):
        self.log = log
        self.sources = sources
        #: Suppressed people: acknowledged, never stored (``millpond.regulations``).
        self.blocklist = blocklist or Blocklist()

    def authenticate(self, scope: dict) -> Source:
        site_id, api_key, _ = credentials(scope)
        if not site_id:
            raise Unauthorized("the Track API needs Basic auth with the source's site id and "
                               "API key")
        source = self.sources.by_site_id(site_id)
        if source is None or source.write_key != api_key:
            raise Unauthorized("invalid site id or API key")
        if source.kind != "track":
            raise Forbidden(f"source {source.name!r} is not a track source")
        return source

    async def handle(self, scope: dict, receive, send, method: str, parts: list[str]) -> None:
        source = self.authenticate(scope)
        check_content_type(scope, form=True)
        raw = await read_body(scope, receive)
        if content_type(scope) == FORM_TYPE:
            data = decode_form(raw)
        else:
            data = decode_json(raw) if raw.strip() else {}
        if not isinstance(data, dict):
            raise BadRequest("body must be a JSON object")
        received_ms = int(time.time() * 1000)
        if method == "PUT" and len(parts) == 2 and parts[0] == "customers":
            msg = self._identify(_customer_id(parts[1]), data, scope)
        elif method == "POST" and len(parts) == 3 and parts[0] == "customers" \
                and parts[2] == "events":
            msg = self._event(data, scope, user_id=_customer_id(parts[1]))
        elif method == "POST" and parts == ["events"]:
            anonymous_id = data.get("anonymous_id")
            if not isinstance(anonymous_id, str) or not anonymous_id:
                raise BadRequest("anonymous_id is required for anonymous events",
                                 field="anonymous_id")
            msg = self._event(data, scope, anonymous_id=anonymous_id)
        else:
            raise NotFound(f"no Track API endpoint {method} /api/v1/{'/'.join(parts)}")
        try:
            event = normalize(msg, source_id=source.id, received_ms=received_ms,
                              check_huge=body_has_huge_int(raw))
        except MessageRejected as exc:
            error = TooLarge if exc.code == "message_too_large" else BadRequest
            raise error(exc.reason, field=exc.field, code=exc.code) from None
        if self.blocklist.active and screen_out([event], self.blocklist, source.id):
            await send_json(send, 200, {})
            return
        result = await self.log.append([event])
        if result.stored:
            metrics.EVENTS_ACCEPTED.labels(source.id, event.type).inc()
        await send_json(send, 200, {})

    @staticmethod
    def _origin(scope: dict) -> dict:
        return {"library": {"name": "millpond-track-api"},
                "millpond": {"origin": "track_api", "endpoint": f"{scope['method']} "
                             f"{scope['path']}"}}

    def _identify(self, customer_id: str, attributes: dict, scope: dict) -> dict:
        nested = attributes.get("attributes")
        if isinstance(nested, dict):
            # ``attributes[plan]=pro`` (a form, or the v2 API's shape): the attributes
            # themselves, beside any given at the top level.
            attributes = {**{k: v for k, v in attributes.items() if k != "attributes"},
                          **nested}
        msg: dict[str, Any] = {"type": "identify", "userId": customer_id,
                               "traits": attributes, "messageId": str(uuid.uuid4()),
                               "context": self._origin(scope)}
        if "_timestamp" in attributes:
            msg["timestamp"] = format_ms(_seconds(attributes["_timestamp"], "_timestamp"))
        return msg

    def _event(self, data: dict, scope: dict, user_id: str | None = None,
               anonymous_id: str | None = None) -> dict:
        unknown = data.keys() - _EVENT_FIELDS
        if unknown:
            name = sorted(unknown)[0][:60]
            raise BadRequest(f"unknown field {name!r}", field=name)
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest("name is required (a non-empty string)", field="name")
        kind = _EVENT_TYPES.get(data.get("type") or "event")
        if kind is None:
            raise BadRequest("type must be one of event, page, screen", field="type")
        props = data.get("data") or {}
        if not isinstance(props, dict):
            raise BadRequest("data must be an object", field="data")
        dedupe = data.get("id")
        if dedupe is not None and (not isinstance(dedupe, str) or not dedupe):
            raise BadRequest("id must be a non-empty string", field="id")
        msg: dict[str, Any] = {"type": kind, "properties": props,
                               "messageId": dedupe or str(uuid.uuid4()),
                               "context": self._origin(scope)}
        msg["event" if kind == "track" else "name"] = name
        if user_id is not None:
            msg["userId"] = user_id
        if anonymous_id is not None:
            msg["anonymousId"] = anonymous_id
        if data.get("timestamp") is not None:
            msg["timestamp"] = format_ms(_seconds(data["timestamp"], "timestamp"))
        return msg


def _customer_id(segment: str) -> str:
    customer_id = unquote(segment)
    if not customer_id or len(customer_id.encode()) > MAX_ID_BYTES:
        raise BadRequest(f"customer id must be 1 to {MAX_ID_BYTES} bytes", field="id")
    return customer_id


def _seconds(value: Any, field: str) -> int:
    try:
        return unix_seconds_to_ms(value)
    except BadTimestamp as exc:
        raise BadRequest(f"{field} {exc}", field=field) from None
