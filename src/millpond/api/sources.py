"""``/api/sources``: create, list, show, update, delete, rotate write keys, and snippets."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from millpond.api.deps import require_admin, services
from millpond.app.services import Services
from millpond.sources.service import source_dict
from millpond.sources.snippets import snippet

router = APIRouter(prefix="/api/sources", tags=["sources"], dependencies=[Depends(require_admin)])

_ORIGINS = ("Origins a browser may send this source's events from, e.g. "
            '["https://www.example.com", "https://*.example.com"]; null: any origin.')


class SourceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    kind: Literal["pipelines", "track", "import"] = "pipelines"
    replayable: bool | None = None
    allowed_origins: list[str] | None = Field(default=None, description=_ORIGINS)
    enabled: bool = True


class SourceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=100)
    replayable: bool | None = None
    allowed_origins: list[str] | None = Field(default=None, description=_ORIGINS)
    enabled: bool | None = None


@router.post("", status_code=201)
def create_source(body: SourceCreate, mp: Services = Depends(services)) -> dict:
    return source_dict(mp.sources.create(body.name, body.kind, body.replayable,
                                         body.allowed_origins, body.enabled))


@router.get("")
def list_sources(mp: Services = Depends(services)) -> dict:
    return {"sources": [source_dict(s) for s in mp.sources.list()]}


@router.get("/{ref}")
def show_source(ref: str, mp: Services = Depends(services)) -> dict:
    return source_dict(mp.sources.get(ref))


@router.patch("/{ref}")
def update_source(ref: str, body: SourceUpdate, mp: Services = Depends(services)) -> dict:
    """Change the fields given; ``"allowed_origins": null`` accepts any origin again."""
    extra = {"allowed_origins": body.allowed_origins} \
        if "allowed_origins" in body.model_fields_set else {}
    return source_dict(mp.sources.update(ref, name=body.name, replayable=body.replayable,
                                         enabled=body.enabled, **extra))


@router.post("/{ref}/rotate-key")
def rotate_key(ref: str, mp: Services = Depends(services)) -> dict:
    return source_dict(mp.sources.rotate_key(ref))


@router.delete("/{ref}")
def delete_source(ref: str, mp: Services = Depends(services)) -> dict:
    return {"deleted": source_dict(mp.sources.delete(ref))}


@router.get("/{ref}/snippet")
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
