"""Replays: the "Replay past data" form with its Preview and Start replay buttons, a
running replay's live progress (``<progress>``, counts by outcome, rate, ETA) over
server-sent events with Pause, Resume and Cancel, and the list of past replays with
their final reports. Refusals come back as the replay service's reason, on the form."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from millpond.app.abandoned import unless_client_leaves
from millpond.console import forms
from millpond.console.auth import checked_form
from millpond.errors import BadRequest, MillpondError

TERMINAL = ("completed", "cancelled", "failed")
PROGRESS_SECONDS = 0.5


def progress_view(replay: dict) -> dict:
    """What the progress fragment shows: fraction done, counts, rate and ETA."""
    p = replay["progress"]
    total = max(replay["estimate"]["events"] or 0, p["scanned"])
    done = total if replay["state"] == "completed" else p["scanned"]
    return {**replay, "total": total, "done": done,
            "percent": round(100 * done / total) if total else 100,
            "skipped_total": sum(p["skipped"].values())}


def routes(console) -> list[Route]:
    svc = console.services
    render = console.render
    streams = console.streams

    async def index(request: Request) -> Response:
        return render.page(request, "replays.html", section="replays", title="Replays",
                           replays=[progress_view(r) for r in svc.replays()],
                           destinations=await svc.destinations())

    def form_page(request: Request, dest: dict, values: dict, *, preview=None, error=None,
                  field=None, status=200) -> Response:
        return render.page(request, "replay_new.html", section="replays",
                           title=f"Replay past data to {dest['name']}", dest=dest,
                           sources=svc.sources(), values=values, preview=preview,
                           error=error, field=field, status=status)

    async def new(request: Request) -> Response:
        dest = await svc.destination(request.query_params.get("destination", ""))
        return form_page(request, dest, {"sources": []})

    async def submit(request: Request) -> Response:
        form = await checked_form(request)
        dest = await svc.destination(forms.text(form, "destination"))
        values = {"from": forms.text(form, "from"), "to": forms.text(form, "to"),
                  "filter": forms.text(form, "filter"), "rate": forms.text(form, "rate"),
                  "sources": [str(s) for s in form.getlist("sources")]}
        try:
            body = _body(dest["id"], values)
            if forms.text(form, "action") == "start":
                replay = await svc.start_replay(body)
                return forms.go(f"/replays/{replay['id']}", "Replay started.")
            preview = await unless_client_leaves(request, svc.preview_replay(body))
        except MillpondError as exc:
            return form_page(request, dest, values, error=exc.message, field=exc.field,
                             status=exc.status)
        return form_page(request, dest, values, preview=preview)

    async def show(request: Request) -> Response:
        replay = progress_view(svc.replay(request.path_params["id"]))
        return render.page(request, "replay.html", section="replays",
                           title=f"Replay {replay['id']}", r=replay, terminal=TERMINAL)

    async def stream(request: Request) -> Response:
        replay_id = request.path_params["id"]
        svc.replay(replay_id)  # 404 now rather than inside the stream
        return streams.response(_progress(replay_id))

    async def _progress(replay_id: str) -> AsyncIterator[tuple[str, str]]:
        last = None
        while not streams.stopping:
            replay = progress_view(svc.replay(replay_id))
            html = render.text("_replay_progress.html", r=replay, base=render.env.globals["base"])
            if html != last:
                yield "progress", html
                last = html
            if replay["state"] in TERMINAL:
                yield "done", ""
                return
            await asyncio.sleep(PROGRESS_SECONDS)

    async def steer(request: Request) -> Response:
        await checked_form(request)
        replay_id, what = request.path_params["id"], request.path_params["what"]
        action = {"pause": svc.pause_replay, "resume": svc.resume_replay,
                  "cancel": svc.cancel_replay}.get(what)
        if action is None:
            raise BadRequest(f"no such replay action {what!r}")
        replay = await action(replay_id)
        return forms.go(f"/replays/{replay_id}", f"Replay {replay['state']}.")

    return [Route("/replays", index), Route("/replays/new", new),
            Route("/replays/new", submit, methods=["POST"]),
            Route("/replays/{id}", show), Route("/replays/{id}/stream", stream),
            Route("/replays/{id}/{what}", steer, methods=["POST"])]


def _body(dest_id: str, values: dict) -> dict:
    if not values["from"]:
        raise BadRequest("From is required: the start of the window, e.g. 2026-05-01",
                         field="from")
    body: dict = {"destination": dest_id, "from": values["from"]}
    if values["to"]:
        body["to"] = values["to"]
    if values["sources"]:
        body["sources"] = values["sources"]
    if values["filter"]:
        body["filter"] = values["filter"]
    if values["rate"]:
        try:
            body["rate"] = float(values["rate"])
        except ValueError:
            raise BadRequest(f"rate must be a number of events per second; got "
                             f"{values['rate']!r}", field="rate") from None
    return body
