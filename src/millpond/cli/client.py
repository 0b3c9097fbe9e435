"""The one way CLI commands talk to a running millpond server.

Every command goes through :class:`AdminClient` so that URL/token resolution and
error translation (``{"error": {...}}`` bodies into one-line messages) live in one
place: the API is the product, the CLI is only its twin.
"""

from __future__ import annotations

import os
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8787"


class ApiError(Exception):
    """An answer from the server that is not a success, already made readable."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def __str__(self) -> str:
        # Many messages start with their field already (``definition.within: ...``).
        named = not self.field or self.message.startswith(f"{self.field}: ")
        where = "" if named else f" (field {self.field})"
        return f"{self.message}{where}"


class AdminClient:
    """Admin-API client: ``Authorization: Bearer <token>``, JSON in and out."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 30.0):
        self.url = (url or os.environ.get("MILLPOND_URL") or DEFAULT_URL).rstrip("/")
        self.token = token or os.environ.get("MILLPOND_ADMIN_TOKEN") or ""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send one request; return the decoded JSON body or raise :class:`ApiError`."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(0, "unreachable", f"cannot reach millpond at {self.url}: {exc}") from exc
        if response.status_code >= 400:
            raise _error_from(response)
        if not response.content:
            return None
        return response.json()

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=_drop_none(params))

    def post(self, path: str, json: Any = None, **kwargs: Any) -> Any:
        return self.request("POST", path, json=json, **kwargs)

    def put(self, path: str, json: Any = None) -> Any:
        return self.request("PUT", path, json=json)

    def patch(self, path: str, json: Any = None) -> Any:
        return self.request("PATCH", path, json=json)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def close(self) -> None:
        self._http.close()


def _drop_none(params: dict[str, Any] | None) -> dict[str, Any] | None:
    if params is None:
        return None
    return {k: v for k, v in params.items() if v is not None}


def _error_from(response: httpx.Response) -> ApiError:
    try:
        err = response.json()["error"]
        return ApiError(response.status_code, err.get("code", "error"), err["message"],
                        err.get("field"))
    except (ValueError, KeyError, TypeError):
        text = response.text.strip()[:200] or response.reason_phrase
        return ApiError(response.status_code, "http_error", f"HTTP {response.status_code}: {text}")
