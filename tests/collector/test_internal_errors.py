"""An unexpected failure anywhere answers the JSON error SDKs parse, is logged once with its
traceback and is counted; never a plain-text 500.

The fault is injected into a real server object (its source store raises), and the
requests go through the same ASGI entry uvicorn serves.
"""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from millpond import metrics
from millpond.app import ServerConfig
from millpond.app.asgi import build_asgi
from millpond.app.services import Services, build_services
from millpond.storage import StorageConfig

TOKEN = "internal-errors-token"


def _boom(*_args, **_kwargs):
    raise RuntimeError("injected fault")


def _count(component: str) -> float:
    return metrics.INTERNAL_ERRORS.labels(component)._value.get()


@pytest.fixture
def mp(tmp_path):
    server = build_services(ServerConfig(
        storage=StorageConfig(data_dir=str(tmp_path / "data")), admin_token=TOKEN))
    yield server
    server.close()


def _request(mp: Services, method: str, path: str, **kwargs) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=build_asgi(mp))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.request(method, path, **kwargs)
    return asyncio.run(go())


@pytest.mark.parametrize(("method", "path", "component", "kwargs"), [
    ("POST", "/v1/track", "collector", {"json": {"userId": "u", "event": "E"},
                                        "auth": ("some-key", "")}),
    ("GET", "/v1/projects/some-key/settings", "collector", {"headers": {"Origin": "http://a.b"}}),
    ("GET", "/api/sources", "api", {"headers": {"Authorization": f"Bearer {TOKEN}"}}),
])
def test_unexpected_errors_are_json_logged_once_and_counted(mp, caplog, method, path,
                                                             component, kwargs) -> None:
    mp.sources.by_write_key = _boom
    mp.sources.list = _boom
    before = _count(component)
    with caplog.at_level(logging.ERROR, logger="millpond"):
        r = _request(mp, method, path, **kwargs)
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["code"] == "internal" and body["error"]["code"] == "internal"
    assert body["message"] and body["error"]["message"]
    if "Origin" in kwargs.get("headers", {}):
        assert r.headers["access-control-allow-origin"] == "http://a.b"
    records = [rec for rec in caplog.records if "injected fault" in (rec.exc_text or "")
               or (rec.exc_info and "injected fault" in str(rec.exc_info[1]))]
    assert len(records) == 1, [rec.getMessage() for rec in caplog.records]
    assert _count(component) == before + 1
