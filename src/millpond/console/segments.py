"""Segments: every segment with its size and state (a build's progress), a form to
create one whose errors stand beside the field the server names, and a segment's page:
its definition (editable), its members a page at a time (each linking to People) and
its recent Audience Entered / Exited events. Both definition boxes preview as one types
(who the definition holds now, nothing saved), and "why" shows, for any person, each
condition with its value and their membership history in the segment. While a
segment builds, its badge shows the progress and the time left, and the page reloads
when it is ready.

Everything goes through :class:`~millpond.segments.service.SegmentService`, the same
object the admin API uses, so the console's validation is the API's, word for word."""

from __future__ import annotations

import json
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from millpond.app.abandoned import unless_client_leaves
from millpond.console import forms
from millpond.console.auth import checked_form
from millpond.errors import BadRequest, MillpondError, NotFound
from millpond.storage.models import EventQuery

MEMBERS_PER_PAGE = 50
#: The notice after a save: the build may be over by the time the page shows, or not.
SAVED = "Segment saved; it is built over the whole log (its state says when it is ready)."
AUDIENCE_EVENTS = 20
#: How far back (events of the built-in source) the page looks for a segment's Audience
#: events: enough for a page, bounded whatever the log's size.
AUDIENCE_SCAN = 500
EXAMPLE = '{"event": "Order Completed", "at_least": 2, "within": "30d"}'


def _definition(text: str) -> object:
    """The definition field as JSON (a JSON error names the field, as the API's would)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"definition: not JSON ({exc.msg} at character {exc.pos}); e.g. "
                         f"{EXAMPLE}", field="definition") from None


def _base_field(field: str | None) -> str | None:
    """``definition.all[1].op`` is shown beside the definition box."""
    return None if field is None else field.split(".")[0].split("[")[0]


def person_link(member: dict) -> str:
    ref = member.get("user_id") or member.get("anonymous_id") or member["id"]
    return "/people/" + quote(ref, safe="")


def routes(console) -> list[Route]:
    svc = console.services
    render = console.render

    def listing(request: Request, error=None, field=None, values=None, status=200):
        return render.page(request, "segments.html", section="segments", title="Segments",
                           segments=svc.mp.segments.list()["segments"],
                           values=values or {}, error=error, field=_base_field(field),
                           example=EXAMPLE, status=status)

    async def index(request: Request) -> Response:
        return listing(request)

    async def create(request: Request) -> Response:
        form = await checked_form(request)
        values = {k: forms.text(form, k) for k in ("key", "name", "definition")}
        try:
            body: dict = {"key": values["key"], "definition": _definition(values["definition"])}
            if values["name"].strip():
                body["name"] = values["name"]
            made = await svc.mp.segments.create(body)
        except MillpondError as exc:
            return listing(request, exc.message, exc.field, values, exc.status)
        return forms.go(f"/segments/{made['id']}", SAVED)

    async def page(request: Request, error=None, field=None, values=None,
                   status=200) -> Response:
        ref = request.path_params["id"]
        segment = svc.mp.segments.get(ref)
        cursor = request.query_params.get("cursor") or None
        members = svc.mp.segments.members(segment["id"], cursor, MEMBERS_PER_PAGE)
        people = [{**m, "link": person_link(m)} for m in members["people"]]
        found = await svc.mp.storage.index.query(EventQuery(
            source_ids=["computed"], descending=True, limit=AUDIENCE_SCAN))
        audience = []
        for stored in found:
            event = json.loads(stored.body)
            if (event.get("properties") or {}).get("segment_id") == segment["id"]:
                audience.append({"seq": stored.seq, "event": event.get("event"),
                                 "who": event.get("userId") or event.get("anonymousId"),
                                 "timestamp": event.get("timestamp"),
                                 "received": event.get("receivedAt")})
                if len(audience) == AUDIENCE_EVENTS:
                    break
        # Fewer than asked for: these are all the Audience events there are.
        looked_at_all = len(found) < AUDIENCE_SCAN
        values = values or {"name": segment["name"],
                            "definition": json.dumps(segment["definition"], indent=2)}
        return render.page(request, "segment.html", section="segments",
                           title=segment["name"], segment=segment, people=people,
                           next_cursor=members["next_cursor"], first_page=cursor is None,
                           audience=audience, looked_at_all=looked_at_all,
                           audience_scan=AUDIENCE_SCAN, values=values, error=error,
                           field=_base_field(field), status=status)

    async def show(request: Request) -> Response:
        return await page(request)

    async def update(request: Request) -> Response:
        form = await checked_form(request)
        values = {k: forms.text(form, k) for k in ("name", "definition")}
        ref = request.path_params["id"]
        try:
            body: dict = {"definition": _definition(values["definition"])}
            if values["name"].strip():
                body["name"] = values["name"]
            await svc.mp.segments.update(ref, body)
        except MillpondError as exc:
            if exc.status == 404:
                raise
            return await page(request, exc.message, exc.field, values, exc.status)
        return forms.go(f"/segments/{quote(ref, safe='')}", SAVED)

    async def preview(request: Request) -> Response:
        """The preview fragment of a definition box (htmx, as one types): the count and
        some members. Errors are part of the fragment, answered 200: htmx swaps in only a
        success."""
        form = await checked_form(request)
        text, key = forms.text(form, "definition"), forms.text(form, "key").strip()
        if not text.strip():
            return HTMLResponse(render.text("_segment_preview.html"))
        try:
            body: dict = {"definition": _definition(text)}
            if key:
                body["key"] = key  # an in_segment back to the segment itself is a cycle
            found = await unless_client_leaves(request, svc.mp.segments.preview(body))
        except MillpondError as exc:
            return HTMLResponse(render.text("_segment_preview.html", error=exc.message))
        return HTMLResponse(render.text(
            "_segment_preview.html", preview=found,
            sample=[{**m, "link": person_link(m)} for m in found["sample"]]))

    async def preview_why(request: Request) -> Response:
        """Why the person of a definition box's person field would be in it or not, as
        either box changes: apart from the count, which reads the whole log, so that
        typing a person's id does not count everyone again. Errors of the definition are
        the count's to show; this fragment shows the person's."""
        form = await checked_form(request)
        text, key = forms.text(form, "definition"), forms.text(form, "key").strip()
        asked = forms.text(form, "person").strip()
        if not text.strip() or not asked:
            return HTMLResponse("")
        try:
            body: dict = {"definition": _definition(text), "person": asked}
            if key:
                body["key"] = key
            found = await svc.mp.segments.preview(body, count=False)
        except MillpondError as exc:
            if exc.field != "person":
                return HTMLResponse("")
            return HTMLResponse(render.text("_segment_why_preview.html", error=exc.message))
        return HTMLResponse(render.text("_segment_why_preview.html", why=found["why"],
                                        asked=asked))

    async def why(request: Request) -> Response:
        segment = svc.mp.segments.get(request.path_params["id"])
        asked = (request.query_params.get("person") or "").strip()
        found = error = None
        if asked:
            try:
                found = await svc.mp.segments.why(asked, segment["id"])
            except NotFound as exc:
                error = exc.message
        return render.page(request, "segment_why.html", section="segments",
                           title=f"Why: {segment['name']}", segment=segment, asked=asked,
                           why=found, error=error, status=404 if error else 200,
                           person_link="/people/" + quote(found["person"], safe="")
                           if found else None)

    async def state(request: Request) -> Response:
        """A building segment's state and progress, polled by its badge (htmx). Once it is
        ready (or gone), a segment's page reloads (its members and counts are whole); in
        the list, where a new definition may be being typed, only the badge changes."""
        in_list = request.query_params.get("in") == "list"
        try:
            segment = svc.mp.segments.get(request.path_params["id"])
        except NotFound:
            segment = None
        if segment is None or segment["state"] == "ready" and not in_list:
            return Response(headers={"HX-Refresh": "true"})
        return HTMLResponse(render.text("_segment_state.html", s=segment, in_list=in_list))

    return [Route("/segments", index), Route("/segments", create, methods=["POST"]),
            Route("/segments/preview", preview, methods=["POST"]),
            Route("/segments/preview/why", preview_why, methods=["POST"]),
            Route("/segments/{id}", show), Route("/segments/{id}", update, methods=["POST"]),
            Route("/segments/{id}/why", why), Route("/segments/{id}/state", state)]
