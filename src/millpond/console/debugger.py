"""Debugger: a live tail of the real log over server-sent events.

Why it can keep up with any ingest rate in constant memory: each tick (4 a second) reads
at most :data:`READ_LIMIT` events after its cursor; when the log has run further ahead
than that, it jumps to the tail and tells the page how many events it skipped. Of what
it read, the source and FQL filters keep what matches, and at most :data:`SHOW_LIMIT`
newest of those are rendered (the rest are counted as skipped too): a person reads a few
events a second, so rendering thousands would only cost the server time. The page keeps
the newest few hundred entries (``console.js``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from millpond.console import forms
from millpond.console.render import pretty
from millpond.console.services import compile_filter
from millpond.errors import BadRequest
from millpond.segments.outputs import COMPUTED_SOURCE_ID

READ_LIMIT = 2000
SHOW_LIMIT = 50
TICK_SECONDS = 0.25
_decode = msgspec.json.Decoder().decode
_CALL_FIELDS = {
    "identify": ("userId", "anonymousId", "traits"),
    "track": ("userId", "anonymousId", "event", "properties"),
    "page": ("userId", "anonymousId", "category", "name", "properties"),
    "screen": ("userId", "anonymousId", "name", "properties"),
    "group": ("userId", "anonymousId", "groupId", "traits"),
    "alias": ("userId", "previousId"),
}


def sdk_call(event: dict) -> str:
    """The event as the SDK call that would have sent it (analytics-node's form)."""
    kind = event.get("type")
    fields = _CALL_FIELDS.get(kind, ()) if isinstance(kind, str) else ()
    args = {k: event[k] for k in fields if event.get(k) is not None}
    if event.get("timestamp"):
        args["timestamp"] = event["timestamp"]
    text = json.dumps(args, indent=2, ensure_ascii=False, default=str)
    name = kind if isinstance(kind, str) and kind.isidentifier() else "send"
    return f"analytics.{name}({text})"


def event_view(event: dict, source_names: dict[str, str]) -> dict:
    """What a template shows of one stored event (every value still to be escaped)."""
    kind = event.get("type")
    source_id = event.get("source_id")
    title = event.get("event") if kind == "track" else event.get("name") or \
        event.get("groupId") or ""
    # Which segment an Audience Entered / Exited is of: a person's activity may list
    # several, and their titles alone do not tell them apart.
    properties = event.get("properties")
    audience = properties.get("audience_key") if source_id == COMPUTED_SOURCE_ID and \
        isinstance(properties, dict) else None
    return {"seq": event.get("seq"), "type": kind, "title": title,
            "audience": audience if isinstance(audience, str) else None,
            "message_id": event.get("messageId"), "user_id": event.get("userId"),
            "anonymous_id": event.get("anonymousId"),
            "source": source_names.get(source_id, source_id) if isinstance(source_id, str)
            else source_id,
            "timestamp": event.get("timestamp"), "received": event.get("receivedAt"),
            "call": sdk_call(event), "raw": pretty(event)}


def rejection_view(row: dict, source_names: dict[str, str]) -> dict:
    body = row.get("body") or ""
    with contextlib.suppress(ValueError):
        body = pretty(json.loads(body))
    return {"id": row["id"], "index": row["index"], "code": row["code"],
            "reason": row["reason"], "field": row.get("field"), "body": body,
            "source": source_names.get(row["source_id"], row["source_id"])}


def routes(console) -> list[Route]:
    svc = console.services
    render = console.render
    streams = console.streams

    def _filters(params) -> tuple[str | None, str, object | None, str | None]:
        source = params.get("source") or None
        text = (params.get("filter") or "").strip()
        trigger, error = None, None
        if text:
            try:
                trigger = compile_filter(text)
            except BadRequest as exc:
                error = exc.message
        source_id = svc.source(source)["id"] if source else None
        return source_id, text, trigger, error

    def _keep(event: dict, source_id: str | None, trigger) -> bool:
        if source_id and event.get("source_id") != source_id:
            return False
        return trigger is None or trigger.matches(event)

    async def page(request: Request) -> Response:
        params = request.query_params
        message_id = (params.get("message_id") or "").strip()
        if message_id:
            found = await svc.find_event(message_id)
            if found is not None:
                return forms.go(f"/debugger/events/{found['seq']}")
        source_id, text, trigger, error = _filters(params)
        names = svc.source_names()
        last = svc.last_seq()
        recent = []
        if error is None:
            rows = await svc.recent_events(source_id, 500 if (trigger or source_id) else 50)
            recent = [event_view(e, names) for e in rows if _keep(e, source_id, trigger)][:50]
        rej_last = await svc.latest_rejection_id()
        rejections = [rejection_view(r, names) for r in
                      await svc.rejections(source_id, max(0, rej_last - 10), 10)]
        stream = f"after={last}&rejections_after={rej_last}"
        if source_id:
            stream += f"&source={source_id}"
        return render.page(
            request, "debugger.html", section="debugger", title="Debugger",
            sources=svc.sources(), source_id=source_id, filter=text, filter_error=error,
            events=recent, rejections=list(reversed(rejections)), stream_query=stream,
            message_id=message_id,
            not_found=f"No stored event has messageId {message_id!r}." if message_id else None)

    async def stream(request: Request) -> Response:
        params = request.query_params
        try:
            after = int(params.get("after", svc.last_seq()))
            rej_after = int(params.get("rejections_after", 0))
        except ValueError:
            return Response("after must be a number", 400)
        source_id, _text, trigger, error = _filters(params)
        if error:
            return Response(error, 400)
        return streams.response(_tail(after, rej_after, source_id, trigger))

    async def _tail(cursor: int, rej_after: int, source_id: str | None,
                    trigger) -> AsyncIterator[tuple[str, str]]:
        names = svc.source_names()
        while not streams.stopping:
            # A second at most: the collector stores rejections just after the events of
            # their request, so they may land after the wake-up that showed the events.
            last = await svc.wait(cursor, 1.0)
            skipped = 0
            if last - cursor > READ_LIMIT:
                skipped = last - READ_LIMIT - cursor
                cursor = last - READ_LIMIT
            rows = await svc.read_after(cursor, READ_LIMIT) if last > cursor else []
            shown = []
            for seq, body in rows:
                event = _decode(body)
                event.setdefault("seq", seq)
                if _keep(event, source_id, trigger):
                    shown.append(event)
            if rows:
                cursor = rows[-1][0]
            if len(shown) > SHOW_LIMIT:
                skipped += len(shown) - SHOW_LIMIT
                shown = shown[-SHOW_LIMIT:]
            if any(e.get("source_id") not in names for e in shown):
                names = svc.source_names()
            html = "".join(render.text("_event.html", ev=event_view(e, names))
                           for e in reversed(shown))
            rejected = await svc.rejections(source_id, rej_after, 50)
            if rejected:
                rej_after = rejected[-1]["id"]
                html = "".join(render.text("_rejection.html", rej=rejection_view(r, names))
                               for r in reversed(rejected)) + html
            if html:
                yield "events", html
            yield "position", json.dumps({"seq": cursor, "skipped": skipped,
                                          "rejections_after": rej_after})
            await asyncio.sleep(TICK_SECONDS)

    async def show(request: Request) -> Response:
        seq = request.path_params["seq"]
        event = await svc.event_at(seq)
        if event is None:
            raise BadRequest(f"no event with seq {seq}", field="seq")
        names = svc.source_names()
        return render.page(request, "event.html", section="debugger",
                           title=f"Event {seq}", ev=event_view(event, names),
                           destinations=await svc.destinations())

    return [Route("/debugger", page), Route("/debugger/stream", stream),
            Route("/debugger/events/{seq:int}", show)]
