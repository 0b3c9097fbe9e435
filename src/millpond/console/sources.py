"""Sources: list, create, reveal and rotate the write key, snippets, last events."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from millpond.console import forms
from millpond.console.auth import checked_form
from millpond.console.debugger import event_view
from millpond.console.services import SDKS
from millpond.errors import MillpondError
from millpond.validation import mask_secret


def routes(console) -> list[Route]:
    svc = console.services
    render = console.render

    def listing(request: Request, error: str | None = None, field: str | None = None,
                values: dict | None = None, status: int = 200) -> Response:
        sources = svc.sources()
        for s in sources:
            s["write_key_masked"] = mask_secret(s["write_key"])
        return render.page(request, "sources.html", section="sources", title="Sources",
                           sources=sources, error=error, field=field, values=values or {},
                           status=status)

    async def index(request: Request) -> Response:
        return listing(request)

    async def create(request: Request) -> Response:
        form = await checked_form(request)
        values = {k: forms.text(form, k) for k in ("name", "kind", "replayable",
                                                   "allowed_origins", "retention")}
        try:
            source = svc.create_source(values["name"], values["kind"] or "pipelines",
                                       forms.tri(form, "replayable"),
                                       forms.lines(form, "allowed_origins") or None,
                                       values["retention"] or "forever")
        except MillpondError as exc:
            return listing(request, exc.message, exc.field, values, exc.status)
        return forms.go(f"/sources/{source['id']}", f"Created source {source['name']}.")

    async def show(request: Request, error: str | None = None, field: str | None = None,
                   values: dict | None = None, status: int = 200) -> Response:
        source = svc.source(request.path_params["ref"])
        source["write_key_masked"] = mask_secret(source["write_key"])
        events = [event_view(e, {}) for e in await svc.recent_events(source["id"], 20)]
        return render.page(request, "source.html", section="sources", title=source["name"],
                           source=source, events=events, sdks=SDKS, error=error, field=field,
                           values=values or {}, status=status)

    async def page(request: Request) -> Response:
        return await show(request)

    async def key(request: Request) -> Response:
        """The write key in full: only when asked for (the Reveal button)."""
        source = svc.source(request.path_params["ref"])
        return HTMLResponse(render.text("_write_key.html", source=source))

    async def snippet(request: Request) -> Response:
        sdk = request.query_params.get("sdk", "segment")
        form = request.query_params.get("form", "snippet")
        if sdk not in SDKS or form not in ("snippet", "npm"):
            return HTMLResponse("unknown SDK", 400)
        ref = request.path_params["ref"]
        text = svc.snippet(ref, sdk, form, request.scope)
        return HTMLResponse(render.text("_snippet.html", sdk=sdk, form=form, text=text,
                                        source=svc.source(ref)))

    async def rotate(request: Request) -> Response:
        await checked_form(request)
        source = svc.rotate_key(request.path_params["ref"])
        return forms.go(f"/sources/{source['id']}",
                        "Write key rotated: the old key is refused from now on.")

    async def update(request: Request) -> Response:
        form = await checked_form(request)
        ref = request.path_params["ref"]
        changes: dict = {"allowed_origins": forms.lines(form, "allowed_origins") or None,
                         "enabled": forms.text(form, "enabled") == "yes"}
        if forms.tri(form, "replayable") is not None:
            changes["replayable"] = forms.tri(form, "replayable")
        if forms.text(form, "retention"):
            changes["retention"] = forms.text(form, "retention")
        try:
            source = svc.update_source(ref, **changes)
        except MillpondError as exc:
            return await show(request, exc.message, exc.field,
                              {"retention": forms.text(form, "retention")}, exc.status)
        return forms.go(f"/sources/{source['id']}", "Saved.")

    async def delete(request: Request) -> Response:
        await checked_form(request)
        source = svc.delete_source(request.path_params["ref"])
        return forms.go("/sources", f"Deleted source {source['name']} (its events stay).")

    return [Route("/sources", index), Route("/sources", create, methods=["POST"]),
            Route("/sources/{ref}", page), Route("/sources/{ref}/key", key),
            Route("/sources/{ref}/snippet", snippet),
            Route("/sources/{ref}/rotate", rotate, methods=["POST"]),
            Route("/sources/{ref}/update", update, methods=["POST"]),
            Route("/sources/{ref}/delete", delete, methods=["POST"])]
