"""``/api/sources``: create, list, show, update, delete and rotate write keys."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from millpond.api.deps import require_admin, server

router = APIRouter(prefix="/api/sources", tags=["sources"], dependencies=[Depends(require_admin)])


class SourceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    kind: Literal["pipelines", "track", "import"] = "pipelines"
    replayable: bool | None = None


class SourceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=100)
    replayable: bool | None = None


@router.post("", status_code=201)
def create_source(body: SourceCreate, mp=Depends(server)) -> dict:
    return mp.sources.create(body.name, body.kind, body.replayable).to_dict()


@router.get("")
def list_sources(mp=Depends(server)) -> dict:
    return {"sources": [s.to_dict() for s in mp.sources.list()]}


@router.get("/{ref}")
def show_source(ref: str, mp=Depends(server)) -> dict:
    return mp.sources.get(ref).to_dict()


@router.patch("/{ref}")
def update_source(ref: str, body: SourceUpdate, mp=Depends(server)) -> dict:
    return mp.sources.update(ref, name=body.name, replayable=body.replayable).to_dict()


@router.post("/{ref}/rotate-key")
def rotate_key(ref: str, mp=Depends(server)) -> dict:
    return mp.sources.rotate_key(ref).to_dict()


@router.delete("/{ref}")
def delete_source(ref: str, mp=Depends(server)) -> dict:
    return {"deleted": mp.sources.delete(ref).to_dict()}
