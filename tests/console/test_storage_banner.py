"""Every console page says so while the storage refuses writes (#13 item 7), and stops
saying so when a write succeeds again: the banner follows the storage's own health."""

from __future__ import annotations

from starlette.requests import Request

from millpond.console.render import Renderer
from millpond.storage.health import StorageHealth


def _page(renderer: Renderer) -> str:
    request = Request({"type": "http", "method": "GET", "path": "/console/", "headers": [],
                       "query_string": b"", "console_session": {"csrf": "t"}})
    return bytes(renderer.page(request, "error.html", title="x").body).decode()


def test_the_banner_follows_a_full_disk_episode() -> None:
    health = StorageHealth()
    renderer = Renderer(health.snapshot)
    assert "Storage unavailable" not in _page(renderer)
    health.failed("database or disk is full")
    health.failed("database or disk is full")
    shown = _page(renderer)
    assert "Storage unavailable since" in shown and "database or disk is full" in shown
    assert "2 writes refused" in shown
    health.ok()
    assert "Storage unavailable" not in _page(renderer)
