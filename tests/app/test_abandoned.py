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


def _tree_cpu_seconds(pid: int) -> float:
    """:func:`_cpu_seconds` of a process and all its descendants alive (a preview's
    worker processes are children of the fork server, a child of the server)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue  # ended meanwhile
    tree, todo = set(), [pid]
    while todo:
        current = todo.pop()
        tree.add(current)
        todo += [child for child, parent in parents.items() if parent == current]
    total = 0.0
    for member in tree:
        try:
            total += _cpu_seconds(member)
        except OSError:
            continue
    return total


def _send_and_leave(server: ServerProcess, path: str, body: bytes) -> None:
    """POST ``body`` to ``path`` on a raw socket, and close it 0.3 s later unanswered."""
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head + body)
        time.sleep(0.3)


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

        _send_and_leave(server, "/api/segments/preview", PREVIEW)
        log = Path(server.log_file.name)
        wait_until(lambda: "/api/segments/preview: the client closed the request after"
                   in log.read_text(), timeout=30, what="the dropped preview stopped")
        left = _cpu_seconds(pid)
        time.sleep(cost)
        # What a preview left running would still spend: most of ``cost``.
        assert _cpu_seconds(pid) - left < cost / 3
    finally:
        server.stop()


def test_a_replay_dry_run_whose_client_left_stops_in_every_worker(tmp_path) -> None:
    """A dry run is tallied by worker processes, which go on after the request's task is
    cancelled unless told: they are, and the parts not started are dropped."""
    data = tmp_path / "srv"
    data.mkdir()
    fill_log(data, EVENTS)
    server = ServerProcess(data).start()
    try:
        assert server.proc is not None
        pid = server.proc.pid
        with server.admin as admin:
            wait_until(lambda: admin.get("/api/segments").status_code == 200, what="up")
            # Connected after the events: the dry run reads them all, live sends none.
            made = admin.post("/api/destinations", json={
                "name": "hook", "type": "webhook",
                "settings": {"url": "http://127.0.0.1:9/unused"}})
            assert made.status_code == 201, made.text
            dry_run = json.dumps({"destination": "hook", "dry_run": True}).encode()
            before = _tree_cpu_seconds(pid)
            whole = admin.post("/api/replays", content=dry_run,
                               headers={"Content-Type": "application/json"})
            assert whole.status_code == 200, whole.text
            assert whole.json()["preview"]["events"] == EVENTS
            cost = _tree_cpu_seconds(pid) - before
        assert cost > 1.0, f"a dry run took {cost:.2f} CPU s: too quick to leave half way"

        _send_and_leave(server, "/api/replays", dry_run)
        log = Path(server.log_file.name)
        wait_until(lambda: "/api/replays: the client closed the request after"
                   in log.read_text(), timeout=30, what="the dropped dry run stopped")
        left = _tree_cpu_seconds(pid)
        time.sleep(cost)
        assert _tree_cpu_seconds(pid) - left < cost / 3
    finally:
        server.stop()
