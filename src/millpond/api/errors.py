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
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        field = ".".join(loc) or None
        message = first.get("msg", "invalid request")
        if field:
            message = f"{field}: {message}"
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
