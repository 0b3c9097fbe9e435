"""When the log's queue is full the collector answers 503 + Retry-After and stores nothing.

The server's queue size is not configurable yet, so this drives :class:`CollectorApp`
directly (httpx's ASGI transport) over the SQLite backend with a log of ``max_pending=10``
whose writer is held back by another connection owning SQLite's write lock.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time

import httpx

from millpond.collector.app import CollectorApp
from millpond.sources.service import SourceService
from millpond.storage.models import EventQuery
from millpond.storage.sqlite import SQLiteStorage


async def not_found(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def batch(prefix: str, n: int) -> dict:
    return {"batch": [{"type": "track", "userId": "u1", "event": "E",
                       "messageId": f"{prefix}-{i}"} for i in range(n)]}


def test_overloaded_log_answers_503_with_retry_after(tmp_path):
    storage = SQLiteStorage(tmp_path, max_pending=10)
    log = storage.log
    source = SourceService(storage.sources).create("web")
    app = CollectorApp(log, storage.rejections, SourceService(storage.sources), not_found)
    blocker = sqlite3.connect(tmp_path / "log.db", isolation_level=None,
                              check_same_thread=False)
    blocker.execute("BEGIN EXCLUSIVE")

    async def scenario() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://collector",
                                     auth=(source.write_key, "")) as client:
            # 8 events wait for the writer; the next 5 do not fit under max_pending=10.
            first = asyncio.ensure_future(client.post("/v1/batch", json=batch("first", 8)))
            deadline = time.monotonic() + 5
            while log._pending < 8:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            refused = await client.post("/v1/batch", json=batch("refused", 5))
            # A single event still fits (8 + 1 <= 10); it waits for the writer too.
            single = asyncio.ensure_future(client.post(
                "/v1/track", json={"userId": "u1", "event": "E", "messageId": "r-single"}))
            while log._pending < 9:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            assert not first.done() and not single.done()  # nothing acked before the commit
            # Let the writer go: the waiting requests are acknowledged once committed.
            await asyncio.get_running_loop().run_in_executor(None, release)
            return refused, await single, await first

    def release() -> None:
        time.sleep(0.05)
        blocker.execute("ROLLBACK")
        blocker.close()

    try:
        refused, refused_single, first = asyncio.run(scenario())
        assert refused.status_code == 503, refused.text
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"]["code"] == "overloaded"
        assert "behind" in refused.json()["error"]["message"]
        assert refused_single.status_code == 200, refused_single.text
        assert first.status_code == 200 and first.json()["accepted"] == 8
        found = asyncio.run(storage.index.query(EventQuery(limit=100)))
        stored = [json.loads(e.body)["messageId"] for e in found]
        assert sorted(stored) == sorted([f"first-{i}" for i in range(8)] + ["r-single"])
    finally:
        storage.close()


def test_server_shutting_down_answers_503(tmp_path):
    """A closed log refuses with Overloaded too (SDKs retry), never a 500."""
    storage = SQLiteStorage(tmp_path)
    sources = SourceService(storage.sources)
    source = sources.create("web")
    app = CollectorApp(storage.log, storage.rejections, sources, not_found)
    storage.log.close()

    async def scenario() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://collector") as c:
            return await c.post("/v1/track", json={"userId": "u", "event": "E"},
                                auth=(source.write_key, ""))

    r = asyncio.run(scenario())
    storage.close()
    assert r.status_code == 503 and r.headers["retry-after"] == "2", r.text
    assert r.json()["error"]["code"] == "overloaded"
