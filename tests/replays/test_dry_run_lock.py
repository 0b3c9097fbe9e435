"""A dry run reads its whole window (seconds at a few hundred thousand events) and must
not hold up starting a replay meanwhile: starts are serialized by a lock, and the dry
run used to run under it. A real server over a log written before it started."""

from __future__ import annotations

import threading
import time

import httpx

from tests.support.big_log import fill_log
from tests.support.delivery import create_destination
from tests.support.server import ServerProcess

EVENTS = 400_000


def test_a_dry_run_does_not_hold_up_starting_a_replay(tmp_path, vendor) -> None:
    data = tmp_path / "srv"
    data.mkdir()
    fill_log(data, EVENTS)
    hook = vendor("webhook")
    server = ServerProcess(data).start()
    try:
        with server.admin as admin:
            for name in ("A", "B"):
                create_destination(admin, name=name, type="webhook",
                                   settings=hook.destination_settings())
            began = time.monotonic()
            whole = admin.post("/api/replays", json={"destination": "A", "dry_run": True},
                               timeout=120)
            assert whole.status_code == 200, whole.text
            assert whole.json()["preview"]["events"] == EVENTS
            took = time.monotonic() - began
            assert took > 1.0, f"a dry run took {took:.2f} s: too quick to start beside"

            answered: list[httpx.Response] = []
            dry = threading.Thread(target=lambda: answered.append(admin.post(
                "/api/replays", json={"destination": "A", "dry_run": True}, timeout=120)))
            dry.start()
            time.sleep(0.3)
            with server.admin as other:
                started = other.post("/api/replays", json={"destination": "B", "rate": 1})
                still_reading = dry.is_alive()
                assert started.status_code == 201, started.text
                other.post(f"/api/replays/{started.json()['id']}/cancel")
            dry.join()
            assert answered[0].status_code == 200
            assert still_reading, "the start waited for the dry run to end"
    finally:
        server.stop()
