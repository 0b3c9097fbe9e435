"""Imports: upload a CSV or JSONL file (people or events, with the CLI's options), watch
it live (progress bar, rows per second, ETA), read and download its error report; cancel
a running import, resume a failed, interrupted or cancelled one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from millpond.console import forms
from millpond.console.auth import checked_form
from millpond.errors import BadRequest, Conflict, MillpondError

OPTIONS = ("id_column", "user_column", "event_column", "timestamp_column", "delimiter")
CHOICES = {"kind": ("", "people", "events"), "types": ("infer", "text"),
           "empty": ("skip", "clear"), "format": ("", "csv", "jsonl")}
PROGRESS_SECONDS = 0.5


def progress_view(job: dict) -> dict:
    """Fraction read, rows per second and ETA of a running import (or its summary)."""
    p = job.get("progress") or {}
    s = job.get("summary") or {}
    total, read = p.get("total_bytes") or 0, p.get("bytes_read") or 0
    elapsed = p.get("elapsed") or 0.0
    rate = (p.get("rows_read", 0) / elapsed) if elapsed else s.get("rows_per_second")
    eta = (total - read) / (read / elapsed) if read and elapsed and total > read else None
    finished = job["state"] != "running"
    return {**job, "total": total or 1, "read": (total or 1) if finished else read,
            "percent": 100 if finished else round(100 * read / total) if total else 0,
            "rows_read": s.get("rows_read", p.get("rows_read", 0)),
            "accepted": s.get("events_accepted", p.get("events_accepted", 0)),
            "rejected": s.get("rows_rejected", p.get("rows_rejected", 0)),
            "duplicates": s.get("duplicates", 0), "rate": rate, "eta": eta}


def routes(console) -> list[Route]:
    svc = console.services
    render = console.render
    streams = console.streams

    def listing(request: Request, error=None, field=None, values=None, status=200):
        return render.page(request, "imports.html", section="imports", title="Imports",
                           imports=[progress_view(j) for j in svc.imports()],
                           sources=[s for s in svc.sources()
                                    if s["kind"] in ("import", "pipelines")],
                           values=values or {}, error=error, field=field, choices=CHOICES,
                           options=OPTIONS, status=status)

    async def index(request: Request) -> Response:
        return listing(request)

    async def upload(request: Request) -> Response:
        form = await checked_form(request)
        values = {k: forms.text(form, k) for k in ("source", *OPTIONS, *CHOICES)}
        file = form.get("file")
        try:
            if not isinstance(file, UploadFile) or not file.filename:
                raise BadRequest("choose a CSV or JSONL file to upload", field="file")
            for name, allowed in CHOICES.items():
                if values[name] not in allowed:
                    raise BadRequest(f"{name} must be one of {', '.join(allowed)}", field=name)
            options = {k: values[k] or None for k in OPTIONS}
            job = await svc.start_import(
                values["source"], file, file.filename, kind=values["kind"] or None,
                types=values["types"] or "infer", empty=values["empty"] or "skip",
                format=values["format"] or None, **options)
        except MillpondError as exc:
            return listing(request, exc.message, exc.field, values, exc.status)
        return forms.go(f"/imports/{job['id']}", "Import started.")

    async def show(request: Request) -> Response:
        job = progress_view(svc.import_job(request.path_params["id"]))
        path, rows = await asyncio.to_thread(svc.import_report, job["id"])
        return render.page(request, "import.html", section="imports",
                           title=f"Import {job['id']}", job=job, report=rows,
                           has_report=path is not None)

    async def stream(request: Request) -> Response:
        job_id = request.path_params["id"]
        svc.import_job(job_id)
        return streams.response(_progress(job_id))

    async def _progress(job_id: str) -> AsyncIterator[tuple[str, str]]:
        last = None
        while not streams.stopping:
            job = progress_view(svc.import_job(job_id))
            html = render.text("_import_progress.html", job=job)
            if html != last:
                yield "progress", html
                last = html
            if job["state"] != "running":
                yield "done", ""
                return
            await asyncio.sleep(PROGRESS_SECONDS)

    async def report(request: Request) -> Response:
        job_id = request.path_params["id"]
        path, _rows = await asyncio.to_thread(svc.import_report, job_id, 0)
        if path is None:
            raise BadRequest(f"import {job_id} has no error report")
        return FileResponse(path, media_type="text/csv",
                            filename=f"{job_id}-errors.csv")

    async def cancel(request: Request) -> Response:
        await checked_form(request)
        job_id = request.path_params["id"]
        try:
            job = await svc.cancel_import(job_id)
        except Conflict as exc:
            return forms.go(f"/imports/{job_id}", exc.message)
        if job["state"] == "cancelled":
            last = (job.get("summary") or {}).get("last_row", 0)
            return forms.go(f"/imports/{job_id}", f"Import cancelled after row {last:,}: the "
                            "rows before it are stored. Resume continues from there.")
        return forms.go(f"/imports/{job_id}", f"Import {job['state']}.")

    async def resume(request: Request) -> Response:
        await checked_form(request)
        job_id = request.path_params["id"]
        try:
            await asyncio.to_thread(svc.resume_import, job_id)
        except Conflict as exc:
            return forms.go(f"/imports/{job_id}", exc.message)
        return forms.go(f"/imports/{job_id}", "Import resumed from its checkpoint.")

    return [Route("/imports", index), Route("/imports", upload, methods=["POST"]),
            Route("/imports/{id}", show), Route("/imports/{id}/stream", stream),
            Route("/imports/{id}/errors.csv", report),
            Route("/imports/{id}/cancel", cancel, methods=["POST"]),
            Route("/imports/{id}/resume", resume, methods=["POST"])]
