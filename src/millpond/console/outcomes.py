"""The events behind a funnel count: every number of a destination's delivery funnel links
here (received, matched, mapped, sent, skipped or dead-lettered by reason; live or one
replay), a page of those events, newest first, each opening the event or the tester."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from millpond.console.debugger import event_view

PER_PAGE = 50
STEP_NAMES = {"received": "received", "matched": "matched", "mapped": "mapped",
              "sent": "sent", "skipped": "skipped", "dead_lettered": "dead-lettered"}


def routes(console) -> list[Route]:
    svc = console.services
    render = console.render

    async def page(request: Request) -> Response:
        q = request.query_params
        dest = await svc.destination(request.path_params["ref"])
        run, step, action = q.get("run") or "live", q.get("step") or "", q.get("action") or ""
        reason, cursor = q.get("reason"), q.get("cursor") or None
        found = await svc.events_behind(dest["id"], run=run, step=step, action=action,
                                        reason=reason, cursor=cursor, limit=PER_PAGE)
        names = svc.source_names()
        events = [{"seq": e["seq"], "view": event_view(e["event"], names) if e["event"]
                   else None} for e in found["events"]]
        what = STEP_NAMES.get(step, step) + (f" ({reason})" if reason else "")
        title = f"{dest['name']}: {what}" + (f", action {action}" if action else "")
        return render.page(request, "outcomes.html", section="destinations", title=title,
                           dest=dest, run=run, step=step, action=action, reason=reason,
                           what=what, events=events, first_page=cursor is None,
                           next_cursor=found["next_cursor"], kept_days=found["kept_days"],
                           older_unlisted=found["older_unlisted"],
                           params={"run": run, "step": step, "action": action,
                                   **({"reason": reason} if reason is not None else {})})

    return [Route("/destinations/{ref}/outcomes", page)]
