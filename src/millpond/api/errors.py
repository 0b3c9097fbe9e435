"""Turns every failure into the one error shape: ``{"error": {"code", "message", "field"}}``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from millpond.errors import MillpondError


def install(app: FastAPI) -> None:
    @app.exception_handler(MillpondError)
    async def _millpond(_: Request, exc: MillpondError) -> JSONResponse:
        headers = {}
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            headers["Retry-After"] = str(max(1, round(retry_after)))
        return JSONResponse(exc.to_dict(), status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = first.get("loc", ())
        # A repeated query parameter is one field to its sender: no item index.
        loc = [str(p) for p in where if p not in ("body", "query", "path")
               and not (where[:1] == ("query",) and isinstance(p, int))]
        field = ".".join(loc) or None
        message = _readable(first, field)
        return JSONResponse({"error": {"code": "bad_request", "message": message,
                                       "field": field}}, status_code=400)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises after sending this; the collector's ASGI entry, which wraps
        # the admin API, logs and counts it once (millpond.collector.app).
        return JSONResponse({"error": {"code": "internal", "message": "internal error; the "
                                       "server log has the details"},
                             "code": "internal", "message": "internal error"},
                            status_code=500)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse({"error": {"code": code, "message": str(exc.detail)}},
                            status_code=exc.status_code)


#: Pydantic's error types of query and path parameters, in the words of millpond's own
#: errors ("limit must be at least 1; got 0"), with the bound from the error's context.
_SAYS = {
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be above {gt}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be below {lt}",
    "int_parsing": "must be a whole number",
    "float_parsing": "must be a number",
    "bool_parsing": "must be true or false",
    "literal_error": "must be {expected}",
    "missing": "is required",
}


def _readable(error: dict, field: str | None) -> str:
    """One validation error as a sentence naming the field and what was given."""
    says = _SAYS.get(error.get("type", ""))
    if says is None or field is None:
        text = error.get("msg", "invalid request")
        return f"{field}: {text}" if field else text
    try:
        text = f"{field} {says.format(**(error.get('ctx') or {}))}"
    except (KeyError, IndexError):  # a context without the bound: Pydantic's own words
        return f"{field}: {error.get('msg', 'invalid value')}"
    if error.get("type") != "missing" and "input" in error:
        text += f"; got {error['input']!r}"
    return text
