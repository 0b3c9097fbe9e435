"""The events a destination is retrying now: what the funnel's "retrying now" links to.

Each event its pumps hold for a next attempt (live or one replay, one action or all),
with its failed attempts, when the next attempt is due and the vendor's last answer. It
refreshes itself every few seconds (htmx), so recovery is seen as the list emptying:
the events then appear under "sent" (or "dead-lettered") of the same funnel."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from millpond.console.debugger import event_view

PER_PAGE = 100


def routes(console) -> list[Route]:
    svc = console.services
    render = console.render

    async def page(request: Request) -> Response:
        q = request.query_params
        dest = await svc.destination(request.path_params["ref"])
        run, action = q.get("run") or "live", q.get("action") or None
        found = await svc.retrying(dest["id"], run=run, action=action, limit=PER_PAGE)
        names = svc.source_names()
        events = [{**e, "view": event_view(e["event"], names) if e["event"] else None}
                  for e in found["events"]]
        context = {"dest": dest, "run": run, "action": action, "found": found,
                   "events": events,
                   "params": {"run": run, **({"action": action} if action else {})}}
        if request.headers.get("HX-Request"):  # the list's own refresh
            return HTMLResponse(render.text("_retrying.html", **context))
        title = f"{dest['name']}: retrying now" + (f", action {action}" if action else "")
        return render.page(request, "retrying.html", section="destinations", title=title,
                           **context)

    return [Route("/destinations/{ref}/retrying", page)]
