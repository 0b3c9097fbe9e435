"""``/api/sources``: create, list, show, update, delete, rotate write keys, and snippets."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from msgspec import UNSET

from millpond.api.deps import require_admin, services
from millpond.api.models import (
    DeletedSource,
    Snippet,
    SourceCreate,
    SourceList,
    SourceOut,
    SourceUpdate,
)
from millpond.api.schema import body, doc
from millpond.app.services import Services
from millpond.sources.service import source_dict
from millpond.sources.snippets import snippet

router = APIRouter(prefix="/api/sources", tags=["sources"], dependencies=[Depends(require_admin)])

_CREATE = {"name": "web", "kind": "pipelines"}


@router.post("", **doc(SourceOut, request=SourceCreate, status=201, errors=(409, 415),
                       example=_CREATE))
def create_source(new: SourceCreate = body(SourceCreate, _CREATE),
                  mp: Services = Depends(services)) -> dict:
    return source_dict(mp.sources.create(new.name, new.kind, new.replayable,
                                         new.allowed_origins, new.enabled,
                                         new.retention))


@router.get("", **doc(SourceList))
def list_sources(mp: Services = Depends(services)) -> dict:
    return {"sources": [source_dict(s) for s in mp.sources.list()]}


@router.get("/{ref}", **doc(SourceOut, errors=(404,)))
def show_source(ref: str, mp: Services = Depends(services)) -> dict:
    return source_dict(mp.sources.get(ref))


@router.patch("/{ref}", **doc(SourceOut, request=SourceUpdate, errors=(404, 409, 415),
                              example={"replayable": True}))
def update_source(ref: str, change: SourceUpdate = body(SourceUpdate),
                  mp: Services = Depends(services)) -> dict:
    """Change the fields given; ``"allowed_origins": null`` accepts any origin again."""
    extra = {} if change.allowed_origins is UNSET else \
        {"allowed_origins": change.allowed_origins}
    return source_dict(mp.sources.update(ref, name=change.name, replayable=change.replayable,
                                         enabled=change.enabled, retention=change.retention,
                                         **extra))


@router.post("/{ref}/rotate-key", **doc(SourceOut, errors=(404,)))
def rotate_key(ref: str, mp: Services = Depends(services)) -> dict:
    return source_dict(mp.sources.rotate_key(ref))


@router.delete("/{ref}", **doc(DeletedSource, errors=(404,)))
def delete_source(ref: str, mp: Services = Depends(services)) -> dict:
    return {"deleted": source_dict(mp.sources.delete(ref))}


@router.get("/{ref}/snippet", **doc(Snippet, errors=(404,)))
def source_snippet(ref: str, request: Request,
                   sdk: Literal["segment", "customerio", "rudderstack"] = Query(
                       description="which browser SDK the page uses"),
                   form: Literal["snippet", "npm"] = Query(
                       default="snippet", description="a script tag, or code for a bundler"),
                   mp: Services = Depends(services)) -> dict:
    """The code to paste into a page so it sends this source's events to this server,
    with the server's public address (``--public-url``, else this request's host) and
    the write key filled in."""
    source = mp.sources.get(ref)
    address = mp.public.resolve(request.scope)
    return {"source": source.id, "sdk": sdk, "form": form, "url": address.url,
            "text": snippet(source, address, sdk, form)}
