"""People: find a person by user id, anonymous id or profile id; a profile with its
identities, traits (and the time that set each one), groups, and its complete activity
log in event-time order, paged."""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from millpond.console import forms
from millpond.console.debugger import event_view
from millpond.console.services import NOT_YET
from millpond.errors import NotFound

PER_PAGE = 50


def routes(console) -> list[Route]:
    svc = console.services
    render = console.render

    async def search(request: Request) -> Response:
        q = (request.query_params.get("q") or "").strip()
        missing = None
        if q:
            person = await svc.person(q)
            if person is not None:
                return forms.go(f"/people/{quote(person['id'], safe='')}")
            missing = f"No person has the id {q!r}."
        return render.page(request, "people.html", section="people", title="People", q=q,
                           missing=missing, not_yet=NOT_YET)

    async def show(request: Request) -> Response:
        person = await svc.person(request.path_params["id"])
        if person is None:
            raise NotFound(f"no person with id {request.path_params['id']!r}")
        try:
            page = max(0, int(request.query_params.get("page", 0)))
        except ValueError:
            page = 0
        activity = await svc.activity(person, page, PER_PAGE)
        names = svc.source_names()
        traits = [{"name": k, "value": v, "time": person["trait_times"].get(k),
                   "source": person.get("trait_sources", {}).get(k, {})}
                  for k, v in sorted(person["traits"].items())]
        return render.page(request, "person.html", section="people",
                           title=person.get("user_id") or person["id"], person=person,
                           traits=traits, activity=activity,
                           events=[event_view(e, names) for e in activity["events"]])

    return [Route("/people", search), Route("/people/{id:path}", show)]
