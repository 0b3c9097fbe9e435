"""A request whose client leaves stops its work: a segment preview dropped half way
(as the console drops one with each keystroke) must not read the rest of the log for
nobody. Against a real server over a log big enough that a preview takes a while."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from tests.support.big_log import fill_log
from tests.support.server import ADMIN_TOKEN, ServerProcess
from tests.support.wait import wait_until

EVENTS = 400_000
#: A preview that decodes every event's body (a ``where``): the slow kind.
PREVIEW = json.dumps({"definition": {"event": "Order Completed",
                                     "where": "properties.total > 10"}}).encode()


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime, stime in clock ticks


def test_a_preview_whose_client_left_stops_reading_the_log(tmp_path) -> None:
    data = tmp_path / "srv"
    data.mkdir()
    fill_log(data, EVENTS)
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
