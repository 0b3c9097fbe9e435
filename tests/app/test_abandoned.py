"""A request whose client leaves stops its work: a segment preview dropped half way
(as the console drops one with each keystroke) must not read the rest of the log for
nobody. Against a real server over a log big enough that a preview takes a while."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

from millpond.collector.validation import normalize
from millpond.storage.sqlite import SQLiteStorage
from tests.support.server import ADMIN_TOKEN, ServerProcess
from tests.support.wait import wait_until

EVENTS = 400_000
#: What a web SDK adds to each event: a where decodes all of it.
CONTEXT = {"library": {"name": "analytics.js", "version": "5.2.0"},
           "page": {"path": "/products/42", "referrer": "https://example.com/",
                    "title": "A product page", "url": "https://shop.example/products/42"},
           "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/156",
           "campaign": {"name": "winter", "source": "newsletter", "medium": "email"}}
#: A preview that decodes every event's body (a ``where``): the slow kind.
PREVIEW = json.dumps({"definition": {"event": "Order Completed",
                                     "where": "properties.total > 10"}}).encode()


async def _fill(data: Path) -> None:
    storage = SQLiteStorage(data)
    try:
        for start in range(0, EVENTS, 5_000):
            await storage.log.append([normalize(
                {"type": "track", "event": "Order Completed", "userId": f"u{i % 5_000}",
                 "messageId": f"m{i}", "properties": {"total": i % 50, "sku": f"s{i}"},
                 "context": CONTEXT},
                source_id="src_fill", received_ms=1_700_000_000_000)
                for i in range(start, start + 5_000)])
    finally:
        storage.close()


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime, stime in clock ticks


def test_a_preview_whose_client_left_stops_reading_the_log(tmp_path) -> None:
    data = tmp_path / "srv"
    data.mkdir()
    asyncio.run(_fill(data))
    server = ServerProcess(data).start()
    try:
        assert server.proc is not None
        pid = server.proc.pid
        with server.admin as admin:
            wait_until(lambda: admin.get("/api/segments").status_code == 200, what="up")
            before = _cpu_seconds(pid)
            whole = admin.post("/api/segments/preview", content=PREVIEW,
                               headers={"Content-Type": "application/json"})
            # user u's totals are all u % 50: more than 10 for 39 users in 50
            assert whole.status_code == 200 and whole.json()["count"] == 3_900
            cost = _cpu_seconds(pid) - before
        assert cost > 1.0, f"a preview took {cost:.2f} CPU s: too quick to leave half way"

        head = (f"POST /api/segments/preview HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(PREVIEW)}\r\n\r\n").encode()
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(head + PREVIEW)
            time.sleep(0.3)
        log = Path(server.log_file.name)
        wait_until(lambda: "/api/segments/preview: the client closed the request after"
                   in log.read_text(), timeout=30, what="the dropped preview stopped")
        left = _cpu_seconds(pid)
        time.sleep(cost)
        # What a preview left running would still spend: most of ``cost``.
        assert _cpu_seconds(pid) - left < cost / 3
    finally:
        server.stop()
