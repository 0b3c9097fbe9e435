"""People: find people by user id, anonymous id, email or any trait value (the people
search of ``GET /api/people``); a profile with its identities, traits (and the time that
set each one), groups, and its complete activity log, newest first, paged."""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from millpond.console import forms
from millpond.console.debugger import event_view
from millpond.errors import NotFound
from millpond.storage.models import WindowCursor

PER_PAGE = 50
PEOPLE_PER_PAGE = 50


def parse_position(text: str | None) -> WindowCursor | None:
    """An activity page's ``before`` parameter, ``TS:SEQ`` (None: the newest page; a
    malformed one is treated as that too: it only ever comes from our own links)."""
    ts, _, seq = (text or "").partition(":")
    try:
        return WindowCursor(int(ts), int(seq))
    except ValueError:
        return None


def routes(console) -> list[Route]:
    svc = console.services
    render = console.render

    async def search(request: Request) -> Response:
        q = (request.query_params.get("q") or "").strip()
        cursor = request.query_params.get("cursor") or None
        if q and cursor is None:
            person = await svc.person(q)  # an exact id opens that person at once
            if person is not None:
                return forms.go(f"/people/{quote(person['id'], safe='')}")
        found = await svc.search_people(q, cursor, PEOPLE_PER_PAGE)
        people = [{"id": p["id"], "user_id": p.get("user_id"),
                   "anonymous_ids": p.get("anonymous_ids", []),
                   "email": (p.get("traits") or {}).get("email"),
                   "name": (p.get("traits") or {}).get("name")} for p in found["people"]]
        return render.page(request, "people.html", section="people", title="People", q=q,
                           people=people, next_cursor=found["next_cursor"],
                           missing=f"No person matches {q!r}." if q and not people else None)

    async def show(request: Request) -> Response:
        person = await svc.person(request.path_params["id"])
        if person is None:
            raise NotFound(f"no person with id {request.path_params['id']!r}")
        before = parse_position(request.query_params.get("before"))
        activity = await svc.activity(person, before, PER_PAGE)
        older = activity["older"]
        names = svc.source_names()
        traits = [{"name": k, "value": v, "time": person["trait_times"].get(k),
                   "source": person.get("trait_sources", {}).get(k, {})}
                  for k, v in sorted(person["traits"].items())]
        return render.page(request, "person.html", section="people",
                           title=person.get("user_id") or person["id"], person=person,
                           traits=traits, activity=activity, first_page=before is None,
                           older=f"{older.ts}:{older.seq}" if older else None,
                           events=[event_view(e, names) for e in activity["events"]])

    return [Route("/people", search), Route("/people/{id:path}", show)]
