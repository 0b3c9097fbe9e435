"""Typed bodies and documented answers for admin-API routes, from msgspec types.

FastAPI documents only pydantic models by itself, and reads bodies with pydantic. The
admin API's types are msgspec Structs (:mod:`millpond.api.models`) so that bodies are
checked by the people-friendly converter every typed input of millpond shares
(:mod:`millpond.validation`). This module bridges the two:

- :func:`body` is a dependency that decodes the request body into a Struct, or refuses it
  with a 400 naming the field, the value and what would fit (415 for a body that is not
  JSON);
- :func:`doc` gives a route's decorator its request schema, its answer's schema and every
  error status it can answer (all in the one error shape), as ``openapi_extra``;
- :func:`install` puts the Structs' JSON Schemas into ``components.schemas`` and replaces
  FastAPI's guessed answers with the documented ones.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import msgspec
from fastapi import Depends, FastAPI, Request
from fastapi.openapi.utils import get_openapi

from millpond.api import models
from millpond.errors import BadRequest, UnsupportedMediaType
from millpond.validation import explain, problem_of, unwrap, without_none

T = TypeVar("T")
_REF = "#/components/schemas/{name}"
_MARK = "x-millpond-responses"
_PARAMS = "x-millpond-parameters"

#: Query parameters read by millpond's own parsers (their messages are better than a
#: pattern mismatch), documented with what those parsers accept.
TIME_BOUND = {"anyOf": [
    {"type": "string", "format": "date-time", "description": "ISO 8601"},
    {"type": "string", "pattern": r"^-([0-9]{1,5}[smhd]|[0-9]{1,4}w)$",
     "description": "relative to now, e.g. -7d"},
    {"type": "string", "pattern": r"^[0-9]{1,11}(\.[0-9]{1,3})?$",
     "description": "Unix seconds"}]}
CURSOR = {"type": "string", "pattern": r"^[0-9]{1,18}$",
          "description": "next_cursor of the previous page"}

ERRORS = {
    400: "The request does not fit: the message names the field, the value and what fits.",
    401: "No admin token, or a wrong one (`Authorization: Bearer <admin token>`).",
    404: "Nothing has that name or id.",
    409: "The request conflicts with the current state (the message says what to change).",
    413: "The body is too large.",
    415: "The body is not JSON (or, for an upload, not CSV or JSONL).",
    503: "The server is overloaded or its disk is full; retry after `Retry-After` seconds.",
}


def cursor_value(value: str | None) -> int | None:
    """A ``next_cursor`` the API handed out (a decimal number that fits 64 bits), or None
    for "from the start"; anything else is a 400 naming ``cursor``."""
    if value is None or value == "":
        return None
    if not value.isascii() or not value.isdigit() or int(value) > models.MAX_INT:
        raise BadRequest(f"cursor must be a value returned as next_cursor; got {value[:40]!r}",
                         field="cursor")
    return int(value)


def _ref(type_: Any) -> dict:
    return {"$ref": _REF.format(name=type_.__name__)}


def _wants_int(annotation: Any) -> bool:
    base, _ = unwrap(without_none(annotation))
    if base is int:
        return True
    return any(unwrap(arg)[0] is int for arg in typing.get_args(base))


def _replace(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict) and isinstance(head, str):
        return {**value, head: _replace(value[head], rest, new)}
    if isinstance(value, list) and isinstance(head, int):
        return [*value[:head], _replace(value[head], rest, new), *value[head + 1:]]
    return value


def _retry(raw: bytes, type_: type[T], exc: msgspec.ValidationError,
           example: Mapping[str, Any] | None) -> T:
    """After msgspec refused ``raw``: accept integral numbers written as ``2.0`` where an
    integer is wanted (JSON Schema calls them integers), else refuse with the message."""
    try:  # Python's json keeps what msgspec cannot (integers over 64 bits), for the message
        value = json.loads(raw)
    except ValueError:
        value = None
    for _ in range(1000):
        problem = problem_of(exc, value, type_)
        given = problem.value
        if not (isinstance(given, float) and given.is_integer() and abs(given) < 2**63
                and problem.kind == "invalid" and _wants_int(problem.annotation)):
            raise BadRequest(explain(problem, example), field=problem.field or None)
        value = _replace(value, problem.path, int(given))
        try:
            return msgspec.convert(value, type_)
        except msgspec.ValidationError as again:
            exc = again
    raise BadRequest("the body has too many numbers written as decimals")


def decode(raw: bytes, type_: type[T], example: Mapping[str, Any] | None = None) -> T:
    """``raw`` JSON as ``type_``; an empty body is ``{}``. Raises :class:`BadRequest`."""
    try:
        return msgspec.json.decode(raw or b"{}", type=type_)
    except msgspec.ValidationError as exc:
        return _retry(raw, type_, exc, example)
    except msgspec.DecodeError as exc:
        raise BadRequest(f"the body is not valid JSON ({exc})") from None


def body(type_: type[T], example: Mapping[str, Any] | None = None) -> Any:
    """A dependency giving the request body as ``type_`` (see :func:`decode`)."""

    async def parse(request: Request) -> T:
        media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        raw = await request.body()
        if raw and media and media != "application/json" and not media.endswith("+json"):
            raise UnsupportedMediaType(f"send the body as JSON (Content-Type: "
                                       f"application/json), not {media}")
        return decode(raw, type_, example)

    return Depends(parse)


def doc(answer: Any = None, *, request: Any = None, status: int = 200,
        also: Iterable[int] = (), errors: Iterable[int] = (), example: Any = None,
        media: str = "application/json", request_media: Mapping[str, Any] | None = None,
        params: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Decorator arguments documenting a route: ``request`` body type, ``answer`` type
    (at ``status``, and at the ``also`` statuses), and the error statuses it can answer
    besides 401 (every admin route needs the token), 400 (every route has parameters
    or a body) and 503 (every route uses the stores, which refuse with a Retry-After
    while the disk is full). ``params`` replaces the documented schema of query parameters."""
    extra: dict[str, Any] = {}
    if request is not None:
        content: dict[str, Any] = {"schema": _ref(request)}
        if example is not None:
            content["example"] = example
        extra["requestBody"] = {"required": True, "content": {"application/json": content}}
    elif request_media is not None:
        extra["requestBody"] = {"required": True, "content": dict(request_media)}
    ok: dict[str, Any] = {"description": "OK" if status < 300 else "Accepted"}
    if answer is not None:
        ok["content"] = {media: {"schema": _ref(answer)}}
    responses: dict[str, Any] = {str(code): ok for code in sorted({status, *also})}
    for code in sorted({400, 401, 503, *errors}):
        responses[str(code)] = {"description": ERRORS[code],
                                "content": {"application/json": {
                                    "schema": _ref(models.ErrorBody)}}}
    extra[_MARK] = responses
    if params:
        extra[_PARAMS] = {name: dict(schema) for name, schema in params.items()}
    return {"status_code": status, "openapi_extra": extra, "response_model": None}


def install(app: FastAPI) -> None:
    """Serve an OpenAPI document with the Structs' schemas and the documented answers."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(title=app.title, version=app.version, routes=app.routes,
                               description=app.description)
        _, components = msgspec.json.schema_components(models.ALL, ref_template=_REF)
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        schemas.update(components)
        schemas.update(_destination_variants(schemas["DestinationCreate"]))
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                if isinstance(operation, dict) and _MARK in operation:
                    operation["responses"] = operation.pop(_MARK)
                if isinstance(operation, dict) and _PARAMS in operation:
                    given = operation.pop(_PARAMS)
                    for param in operation.get("parameters", []):
                        if param["name"] in given:
                            param["schema"] = given[param["name"]]
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override


def _destination_variants(base: dict[str, Any]) -> dict[str, Any]:
    """``DestinationCreate`` as one variant per destination type, each with its type's
    settings schema: what fits ``settings`` depends on ``type``, and the document says so."""
    from millpond.destinations.registry import all_types

    types = all_types()
    _, settings = msgspec.json.schema_components([cls.settings_type for cls in types],
                                                 ref_template=_REF)
    out: dict[str, Any] = dict(settings)
    variants = []
    for cls in types:
        name = f"DestinationCreate_{cls.name}"
        variant = json.loads(json.dumps(base))
        variant["title"] = name
        variant["properties"]["type"] = {"type": "string", "enum": [cls.name]}
        variant["properties"]["settings"] = _ref(cls.settings_type)
        variant["required"] = sorted({*variant.get("required", ()), "type", "settings"})
        out[name] = variant
        variants.append({"$ref": _REF.format(name=name)})
    out["DestinationCreate"] = {"title": "DestinationCreate", "oneOf": variants,
                                "discriminator": {"propertyName": "type"}}
    return out
