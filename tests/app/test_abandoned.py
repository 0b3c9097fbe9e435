"""A request whose client leaves stops its work: a segment preview dropped half way
(as the console drops one with each keystroke) must not read the rest of the log for
nobody. Against a real server over a log big enough that a preview takes a while."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

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


@pytest.fixture
def server(tmp_path) -> Iterator[ServerProcess]:
    """A real server over a log of :data:`EVENTS` events."""
    data = tmp_path / "srv"
    data.mkdir()
    fill_log(data, EVENTS)
    running = ServerProcess(data).start()
    try:
        with running.admin as admin:
            wait_until(lambda: admin.get("/api/segments").status_code == 200, what="up")
        yield running
    finally:
        running.stop()


def _work_stops_when_the_client_leaves(server: ServerProcess, path: str, body: bytes,
                                       answered: Callable[[httpx.Response], None]) -> None:
    """Time the CPU the whole request costs (``answered`` checks its answer); then send
    it again and close the connection 0.3 s later: the server must log that it stopped,
    and spend far less than the whole request's CPU after that."""
    assert server.proc is not None
    pid = server.proc.pid
    before = _tree_cpu_seconds(pid)
    with server.admin as admin:
        whole = admin.post(path, content=body, headers={"Content-Type": "application/json"})
    answered(whole)
    cost = _tree_cpu_seconds(pid) - before
    assert cost > 1.0, f"{path} took {cost:.2f} CPU s: too quick to leave half way"

    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head + body)
        time.sleep(0.3)
    log = Path(server.log_file.name)
    wait_until(lambda: f"{path}: the client closed the request after" in log.read_text(),
               timeout=30, what="the dropped request stopped")
    left = _tree_cpu_seconds(pid)
    time.sleep(cost)
    # What work left running would still spend: most of ``cost``.
    assert _tree_cpu_seconds(pid) - left < cost / 3


def test_a_preview_whose_client_left_stops_reading_the_log(server) -> None:
    def answered(whole: httpx.Response) -> None:
        # user u's totals are all u % 50: more than 10 for 39 users in 50
        assert whole.status_code == 200 and whole.json()["count"] == 3_900

    _work_stops_when_the_client_leaves(server, "/api/segments/preview", PREVIEW, answered)


def test_a_replay_dry_run_whose_client_left_stops_in_every_worker(server) -> None:
    """A dry run is tallied by worker processes, which go on after the request's task is
    cancelled unless told: they are, and the parts not started are dropped."""
    with server.admin as admin:
        # Connected after the events: the dry run reads them all, live sends none.
        made = admin.post("/api/destinations", json={
            "name": "hook", "type": "webhook", "settings": {"url": "http://127.0.0.1:9/x"}})
        assert made.status_code == 201, made.text

    def answered(whole: httpx.Response) -> None:
        assert whole.status_code == 200, whole.text
        assert whole.json()["preview"]["events"] == EVENTS

    _work_stops_when_the_client_leaves(
        server, "/api/replays", json.dumps({"destination": "hook", "dry_run": True}).encode(),
        answered)
