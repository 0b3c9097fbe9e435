"""Regulations: suppress or delete a person (the form, with its CSRF token), the list of
regulations with who asked and when, and one regulation's status per store and per
destination (counts removed, ``not_supported`` with why, ``failed`` with its attempts).
The same service as ``/api/regulations``, through the console's one door (``mp``)."""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from millpond.console import forms
from millpond.console.auth import checked_form
from millpond.errors import BadRequest
from millpond.regulations.present import present
from millpond.storage.models import RegulationType

TYPES = (("suppress", "Suppress: keep and send nothing of theirs from now on"),
         ("delete", "Delete: remove what is kept, ask destinations to delete"),
         ("suppress_with_delete", "Suppress and delete"),
         ("unsuppress", "Lift a suppression"))


def routes(console) -> list[Route]:
    mp = console.services.mp
    render = console.render

    def index_page(request: Request, *, values: dict | None = None, error: str | None = None,
                   field: str | None = None, status: int = 200) -> Response:
        regs = [present(r, mp.storage.destinations) for r in mp.regulations.list(200)]
        return render.page(request, "regulations.html", section="regulations",
                           title="Regulations", regulations=regs, types=TYPES,
                           values=values or {"type": "suppress_with_delete"}, error=error,
                           field=field, status=status)

    async def index(request: Request) -> Response:
        return index_page(request)

    async def submit(request: Request) -> Response:
        form = await checked_form(request)
        values = {"type": forms.text(form, "type"), "user_ids": forms.text(form, "user_ids"),
                  "anonymous_ids": forms.text(form, "anonymous_ids"),
                  "requested_by": forms.text(form, "requested_by")}
        try:
            kind = RegulationType(values["type"])
        except ValueError:
            return index_page(request, values=values, field="type", status=400,
                              error=f"choose what to do (got {values['type']!r})")
        try:
            reg = await mp.regulations.create(
                kind, forms.lines(form, "user_ids"), forms.lines(form, "anonymous_ids"),
                values["requested_by"] or "console")
        except BadRequest as exc:
            return index_page(request, values=values, error=exc.message, field=exc.field,
                              status=400)
        return forms.go(f"/regulations/{quote(reg.id, safe='')}",
                        f"Regulation {reg.id} accepted.")

    async def show(request: Request) -> Response:
        reg = present(mp.regulations.get(request.path_params["id"]), mp.storage.destinations)
        return render.page(request, "regulation.html", section="regulations",
                           title=f"Regulation {reg['id']}", reg=reg)

    return [Route("/regulations", index, methods=["GET"]),
            Route("/regulations", submit, methods=["POST"]),
            Route("/regulations/{id}", show)]
