"""The error contract every millpond answer keeps: ``{"error": {"code", "message"[, "field"]}}``."""

from __future__ import annotations

import httpx


def assert_error_shape(response: httpx.Response) -> dict:
    """A non-200 answer is JSON ``{"error": {"code", "message"[, "field"]}}``; returns it."""
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    error = body["error"]
    assert isinstance(error.get("code"), str) and error["code"], body
    assert isinstance(error.get("message"), str) and error["message"], body
    assert error.get("field") is None or isinstance(error["field"], str), body
    return error
