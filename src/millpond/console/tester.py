"""The event tester: pick a stored event, see what each action of a destination would do
with it (which clauses of its trigger failed, the mapped payload, the request), and
optionally send it for real."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from millpond.console import forms
from millpond.console.auth import checked_form
from millpond.console.debugger import event_view
from millpond.errors import NotFound


def routes(console) -> list[Route]:
    svc = console.services
    render = console.render

    async def pick(params) -> dict | None:
        seq = (params.get("seq") or "").strip()
        message_id = (params.get("message_id") or "").strip()
        if seq.isdigit():
            event = await svc.event_at(int(seq))
            if event is None:
                raise NotFound(f"no event with seq {seq}", field="seq")
            return event
        if message_id:
            event = await svc.find_event(message_id)
            if event is None:
                raise NotFound(f"no stored event with messageId {message_id!r}",
                               field="message_id")
            return event
        return None

    async def page(request: Request, params, answers=None) -> Response:
        dest = await svc.destination(request.path_params["ref"])
        names = svc.source_names()
        error = None
        try:
            event = await pick(params)
        except NotFound as exc:
            event, error = None, exc.message
        result = await svc.test_event(dest["id"], event) if event is not None else None
        recent = [event_view(e, names) for e in await svc.recent_events(None, 15)]
        return render.page(request, "tester.html", section="destinations",
                           title=f"Test {dest['name']}", dest=dest, result=result,
                           ev=event_view(event, names) if event else None, recent=recent,
                           answers=answers, error=error,
                           message_id=params.get("message_id") or "")

    async def tester(request: Request) -> Response:
        return await page(request, request.query_params)

    async def send(request: Request) -> Response:
        form = await checked_form(request)
        event = await pick(form)
        if event is None:
            return forms.go(f"/destinations/{request.path_params['ref']}/tester")
        answers = await svc.send_test(request.path_params["ref"], event)
        return await page(request, form, answers)

    return [Route("/destinations/{ref}/tester", tester),
            Route("/destinations/{ref}/tester", send, methods=["POST"])]
