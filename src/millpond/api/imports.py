"""``/api/imports``: upload a CSV or JSONL file; it is imported in the background.

The body is the file itself (``Content-Type: text/csv`` or ``application/x-ndjson``),
streamed to the data dir; options come as query parameters, mirroring the CLI's flags.
A running import can be cancelled (it stops at a durable checkpoint) and a failed,
interrupted or cancelled one resumed from its checkpoint.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request

from millpond.api.deps import require_admin, services
from millpond.api.models import ImportList, ImportOut
from millpond.api.schema import doc
from millpond.app.services import Services
from millpond.backfill import ImportInputError, ImportOptions
from millpond.backfill.jobs import CANCEL_WAIT, MAX_UPLOAD_BYTES
from millpond.errors import BadRequest, TooLarge

router = APIRouter(prefix="/api/imports", tags=["imports"], dependencies=[Depends(require_admin)])


_UPLOAD = {"text/csv": {"schema": {"type": "string", "format": "binary"}},
           "application/x-ndjson": {"schema": {"type": "string", "format": "binary"}}}


@router.post("", **doc(ImportOut, status=202, errors=(404, 413), request_media=_UPLOAD))
async def create_import(
    request: Request,
    source: str,
    kind: Literal["people", "events"] | None = Query(
        default=None, description="people: one identify per row; events: one event per row."
        " Default: events for JSON lines, people for a CSV, which must say when its header"
        " has an `event` column (400 with field `kind`)"),
    file_name: str = Query(default="upload.csv", description="original file name"),
    id_column: str | None = None,
    user_column: str | None = None,
    event_column: str | None = None,
    timestamp_column: str | None = None,
    delimiter: str | None = None,
    types: Literal["infer", "text"] = "infer",
    empty: Literal["skip", "clear"] = "skip",
    format: Literal["csv", "jsonl"] | None = None,
    wait: bool = Query(default=False, description="answer only when the import has finished"),
    mp: Services = Depends(services),
) -> dict:
    src = mp.sources.get(source)

    async def receive(path: Path) -> int:
        size = 0
        with open(path, "wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_UPLOAD_BYTES:
                    raise TooLarge("upload is larger than 20 GiB")
                out.write(chunk)
        return size

    options = ImportOptions(id_column=id_column, user_column=user_column,
                            event_column=event_column, timestamp_column=timestamp_column,
                            delimiter=delimiter, types=types, empty=empty, format=format)
    try:
        job = await mp.imports.start_upload(src, file_name, options, receive, kind)
    except ImportInputError as exc:
        raise BadRequest(str(exc), field=exc.field) from None
    while wait and job["state"] == "running":
        await asyncio.sleep(0.1)
        job = mp.imports.get(job["id"])
    return job


@router.get("", **doc(ImportList))
def list_imports(mp: Services = Depends(services)) -> dict:
    return {"imports": mp.imports.list()}


@router.get("/{job_id}", **doc(ImportOut, errors=(404,)))
def show_import(job_id: str, mp: Services = Depends(services)) -> dict:
    return mp.imports.get(job_id)


@router.post("/{job_id}/cancel", **doc(ImportOut, errors=(404, 409)))
async def cancel_import(job_id: str, mp: Services = Depends(services)) -> dict:
    """Stop a running import at its next checkpoint; answers once it has stopped
    (``cancelled``, or ``completed`` if the file ended first). Rows stored stay."""
    mp.imports.cancel(job_id)
    await asyncio.to_thread(mp.imports.wait, job_id, CANCEL_WAIT)
    return mp.imports.get(job_id)


@router.post("/{job_id}/resume", **doc(ImportOut, status=202, errors=(404, 409)))
async def resume_import(job_id: str, mp: Services = Depends(services)) -> dict:
    """Continue a failed, interrupted or cancelled import after its checkpoint, from the
    same uploaded file (409 when the file is gone: upload it again)."""
    job = mp.imports.store.get(job_id)
    return mp.imports.resume(job_id, mp.sources.get(job.source_id))
