"""What a server's stop leaves for its next start (app/lifecycle.py), on a real
``millpond serve`` stopped with SIGTERM."""

from __future__ import annotations

from pathlib import Path

from tests.support.delivery import send_batch
from tests.support.wait import wait_until


def _segments_of(server, person: str) -> list[str]:
    with server.admin as admin:
        found = admin.get(f"/api/people/{person}")
    return [s["key"] for s in found.json()["segments"]] if found.status_code == 200 else []


def test_a_restart_takes_up_the_segment_state_its_stop_saved(server):
    """The segment follower's state is saved at the stop and taken up at the start, not
    remade with a scan of the log; it still counts the purchase from before the stop."""
    key = server.create_source("web")["write_key"]
    with server.admin as admin:
        created = admin.post("/api/segments", json={
            "key": "repeat", "definition": {"event": "Order Completed", "at_least": 2}})
        assert created.status_code == 201, created.text
        wait_until(lambda: admin.get("/api/segments/repeat").json()["state"] == "ready",
                   what="built")
    send_batch(server.url, key, [{"type": "track", "userId": "ann",
                                  "event": "Order Completed"}])
    wait_until(lambda: server.events(user_id="ann"), what="ann's first purchase stored")
    server.stop()
    log = Path(server.log_file.name)
    assert "segment follower: state saved for the next start" in log.read_text()
    assert (server.data_dir / "segment-state.msgpack").exists()

    server.start()
    send_batch(server.url, key, [{"type": "track", "userId": "ann",
                                  "event": "Order Completed"}])
    wait_until(lambda: _segments_of(server, "ann") == ["repeat"], what="ann entered")
    assert "took up the state saved at the last stop" in log.read_text()
    assert not (server.data_dir / "segment-state.msgpack").exists()  # one start only
