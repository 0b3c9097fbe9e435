"""The Segment-compatible tracking API: ``/v1/<type>``, ``/v1/batch`` and ``/v1/import``.

Policy for a batch with some invalid messages: the valid ones are stored, the answer is
200 listing each rejected message by index and reason, and the rejected messages are
kept (``GET /api/rejections``). A whole-request 4xx is reserved for whole-request faults,
because SDKs retry 429/5xx but drop a batch for good on other 4xx answers.
``X-Strict-Mode: 1`` (Customer.io's convention) turns any invalid message into a 400.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import msgspec

from millpond import metrics
from millpond.collector.cors import check_origin
from millpond.collector.request import (
    check_content_type,
    credentials,
    decode_json,
    error_body,
    header,
    read_body,
    send_json,
)
from millpond.collector.validation import (
    TYPES,
    MessageRejected,
    body_has_huge_int,
    normalize,
)
from millpond.errors import BadRequest, Forbidden, TooLarge, Unauthorized
from millpond.regulations.blocklist import SUPPRESSED_REASON, Blocklist, screen_out
from millpond.sources.service import SourceService
from millpond.storage.contracts import EventLog, RejectionStore
from millpond.storage.models import AppendResult, Rejection, Source
from millpond.timeutil import format_ms

BATCH_FIELDS = frozenset({"batch", "context", "integrations", "sentAt", "writeKey", "metadata",
                          "_metadata"})
_encode = msgspec.json.Encoder().encode


class SegmentAPI:
    """Handles one Segment-spec request end to end; acknowledges only after the commit
    (and, for a batch with rejected messages, after those are kept too)."""

    def __init__(self, log: EventLog, rejections: RejectionStore, sources: SourceService,
                 blocklist: Blocklist | None = None):
        self.log = log
        self.rejections = rejections
        self.sources = sources
        #: Suppressed people: acknowledged, never stored (``millpond.regulations``).
        self.blocklist = blocklist or Blocklist()

    def authenticate(self, scope: dict, data: Any, query_key: str | None = None) -> Source:
        """The source of the request's write key: Basic auth user, Bearer token, the body's
        ``writeKey``, ``?writeKey=`` (beacons), or else the first batch message's own
        ``writeKey``. Refuses a disabled source and a browser origin it does not allow."""
        user, _password, bearer = credentials(scope)
        body_key = data.get("writeKey") if isinstance(data, dict) else None
        candidates = [k for k in (user, bearer, body_key, query_key) if isinstance(k, str) and k]
        if not candidates:
            candidates = _message_keys(data)
        if not candidates:
            raise Unauthorized("missing write key: send it as the Basic auth user name, "
                               "a Bearer token or writeKey in the body")
        for key in candidates:
            source = self.sources.by_write_key(key)
            if source is not None:
                if source.kind == "track":
                    raise Forbidden(f"source {source.name!r} is a track source; send to the "
                                    "Track API (/api/v1/...) with its site id and API key")
                if not source.enabled:
                    raise Forbidden(f"source {source.name!r} is disabled",
                                    code="source_disabled")
                check_origin(scope, source)
                return source
        raise Unauthorized("invalid write key")

    async def handle(self, scope: dict, receive, send, endpoint: str,
                     query_key: str | None = None) -> None:
        check_content_type(scope)
        raw = await read_body(scope, receive)
        data = decode_json(raw)
        if not isinstance(data, dict):
            raise BadRequest("body must be a JSON object")
        source = self.authenticate(scope, data, query_key)
        received_ms = int(time.time() * 1000)
        huge = body_has_huge_int(raw)
        if endpoint in TYPES:
            await self._single(send, data, source, endpoint, received_ms, huge)
        else:
            strict = (header(scope, b"x-strict-mode") or b"").strip() in (b"1", b"true")
            await self._batch(send, data, source, received_ms, huge, strict)

    async def _single(self, send, msg: dict, source: Source, kind: str, received_ms: int,
                      huge: bool) -> None:
        try:
            event = normalize(msg, source_id=source.id, received_ms=received_ms, type_hint=kind,
                              check_huge=huge)
        except MessageRejected as exc:
            metrics.record_rejected(source.id, Counter({(kind, exc.code): 1}))
            error = TooLarge if exc.code == "message_too_large" else BadRequest
            raise error(exc.reason, field=exc.field, code=exc.code) from None
        metrics.REQUEST_BATCH_EVENTS.observe(1)
        if self.blocklist.active and screen_out([event], self.blocklist, source.id):
            await send_json(send, 200, {"success": True})
            return
        result = await self.log.append([event])
        if result.stored:
            metrics.EVENTS_ACCEPTED.labels(source.id, kind).inc()
        else:
            metrics.EVENTS_DUPLICATE.labels(source.id).inc()
        await send_json(send, 200, {"success": True})

    async def _batch(self, send, data: dict, source: Source, received_ms: int, huge: bool,
                     strict: bool) -> None:
        batch = data.get("batch")
        if not isinstance(batch, list):
            raise BadRequest("batch must be an array of messages", field="batch")
        if not batch:
            raise BadRequest("batch is empty", field="batch")
        unknown = data.keys() - BATCH_FIELDS
        if unknown:
            name = sorted(unknown)[0][:60]
            raise BadRequest(f"unknown top-level field {name!r}", field=name)
        context, integrations = data.get("context"), data.get("integrations")
        for key, value in (("context", context), ("integrations", integrations)):
            if value is not None and not isinstance(value, dict):
                raise BadRequest(f"{key} must be an object", field=key)
        events = []
        positions: list[int] = []  # each event's index in the batch
        rejected: list[dict] = []
        rejections: list[Rejection] = []
        reasons: Counter = Counter()
        sent_at = data.get("sentAt")
        received_at = format_ms(received_ms)
        for index, msg in enumerate(batch):
            try:
                own_key = msg.get("writeKey") if isinstance(msg, dict) else None
                if own_key is not None and own_key != source.write_key:
                    raise MessageRejected("write_key_mismatch", "this message's writeKey is "
                                          "not the request's; send each source's messages "
                                          "in a batch of its own", "writeKey")
                positions.append(index)
                events.append(normalize(msg, source_id=source.id, received_ms=received_ms,
                                        batch_context=context, batch_integrations=integrations,
                                        batch_sent_at=sent_at, check_huge=huge,
                                        received_at=received_at))
            except MessageRejected as exc:
                reg = self.blocklist.suppressing(msg.get("userId"), msg.get("anonymousId")) \
                    if self.blocklist.active and isinstance(msg, dict) else None
                if reg is not None:  # a suppressed person's message is not kept, even as
                    self.blocklist.count(reg)  # an error: nothing of it but its index
                    metrics.EVENTS_SUPPRESSED.labels(source.id).inc()
                    rejected.append({"index": index, "code": "suppressed", "field": None,
                                     "reason": SUPPRESSED_REASON})
                    continue
                kind = msg.get("type") if isinstance(msg, dict) else None
                kind = kind if kind in TYPES else None
                reasons[(kind, exc.code)] += 1
                rejected.append({"index": index, "code": exc.code, "reason": exc.reason,
                                 "field": exc.field})
                rejections.append(Rejection(source.id, index, exc.code, exc.reason, exc.field,
                                            received_ms, _encode(msg)[:65536]))
        if reasons:
            metrics.record_rejected(source.id, reasons)
        if strict and rejected:
            await send_json(send, 400, error_body(
                "invalid_messages",
                f"{len(rejected)} of {len(batch)} messages are invalid "
                f"(first: #{rejected[0]['index']}: {rejected[0]['reason']}); "
                "strict mode stores none of them",
                "batch", rejected=rejected))
            return
        metrics.REQUEST_BATCH_EVENTS.observe(len(batch))
        suppressed: list[int] = []
        if self.blocklist.active:
            suppressed = [positions[i] for i in screen_out(events, self.blocklist, source.id)]
            rejected.extend({"index": i, "code": "suppressed", "field": None,
                             "reason": SUPPRESSED_REASON} for i in suppressed)
            rejected.sort(key=lambda r: r["index"])
        result = await self.log.append(events) if events else AppendResult([])
        if rejections:  # diagnostics: stored after the events, in a worker thread
            await asyncio.to_thread(self.rejections.add, rejections)
        stored = Counter(e.type for e, s in zip(events, result.seqs, strict=True) if s is not None)
        metrics.record_accepted(source.id, stored)
        if result.duplicates:
            metrics.EVENTS_DUPLICATE.labels(source.id).inc(result.duplicates)
        await send_json(send, 200, {"success": True, "accepted": result.stored,
                                    "duplicates": result.duplicates, "rejected": rejected,
                                    "suppressed": len(suppressed)})


def _message_keys(data: Any) -> list[str]:
    """The first batch message's ``writeKey``: batches whose messages carry the key and
    the request does not (some mobile and browser SDK versions)."""
    batch = data.get("batch") if isinstance(data, dict) else None
    if isinstance(batch, list) and batch and isinstance(batch[0], dict):
        key = batch[0].get("writeKey")
        if isinstance(key, str) and key:
            return [key]
    return []
