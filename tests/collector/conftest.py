"""Fixtures for the collector tests: one server shared by a whole module, and helpers."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import ServerProcess


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory) -> Iterator[ServerProcess]:
    """A real ``millpond serve`` for every test of one module (cheaper than one per test)."""
    proc = ServerProcess(tmp_path_factory.mktemp("collector") / "data")
    proc.data_dir.mkdir(parents=True)
    proc.start()
    yield proc
    proc.stop()


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
