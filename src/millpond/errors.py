"""Library exceptions that the API and CLI turn into ``{"error": {...}}`` bodies and one-liners.

The library raises these specific errors and never formats HTTP answers itself; only
``millpond.api`` and ``millpond.collector`` map them to statuses, and only the CLI maps
them to exit codes.
"""

from __future__ import annotations


class MillpondError(Exception):
    """Base error carrying the HTTP status, a stable machine code and the field at fault."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code:
            self.code = code

    def to_dict(self) -> dict:
        body: dict = {"code": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        return {"error": body}


class BadRequest(MillpondError):
    status = 400
    code = "bad_request"


class Unauthorized(MillpondError):
    status = 401
    code = "unauthorized"


class Forbidden(MillpondError):
    status = 403
    code = "forbidden"


class NotFound(MillpondError):
    status = 404
    code = "not_found"


class Conflict(MillpondError):
    status = 409
    code = "conflict"


class TooLarge(MillpondError):
    status = 413
    code = "too_large"


class UnsupportedMediaType(MillpondError):
    status = 415
    code = "unsupported_media_type"


class ClientClosed(MillpondError):
    """The client went away before the answer was ready, and its work was stopped. 499,
    nginx's "client closed request": nobody reads it, but the access log says what
    happened."""

    status = 499
    code = "client_closed_request"


class Overloaded(MillpondError):
    """The store cannot keep up: SDKs retry 429/503, so back-pressure never loses data."""

    status = 503
    code = "overloaded"

    def __init__(self, message: str, retry_after: float = 1.0):
        super().__init__(message)
        self.retry_after = retry_after
