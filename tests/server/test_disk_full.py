"""A full disk, for real: the data dir on a small tmpfs, filled up while the server runs.

What must hold: the collector answers a JSON 503 with ``Retry-After`` (every SDK retries
it), never a plain-text 500; the episode is logged once, not once per request; stats,
``/healthz`` and ``/metrics`` show it; delivery that cannot save its progress shows an
error instead of ``running``; and everything recovers without a restart when space
returns."""

from __future__ import annotations

import contextlib
import errno
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.delivery import create_destination, send_batch, stats, track
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

FAST_RETRIES = {"MILLPOND_DELIVERY_RETRY_BASE": "0.05", "MILLPOND_DELIVERY_RETRY_CAP": "0.2"}


@pytest.fixture
def tmpfs(tmp_path) -> Iterator[Path]:
    """``tmp_path/data``: a 24 MiB tmpfs, unmounted after the test."""
    mount = tmp_path / "data"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)],
                   check=True, capture_output=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True, capture_output=True)


def fill(disk: Path) -> Path:
    """Write a file until the disk has no byte left."""
    filler = disk / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(chunk)
        small = b"\0" * 512
        try:
            while True:
                f.write(small)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def big_batch(n: int) -> list[dict]:
    pad = "x" * 4000
    return [track(f"u{uuid.uuid4().hex[:6]}", i, properties={"pad": pad}) for i in range(n)]


def unique(received: list[dict]) -> set[str]:
    return {event["messageId"] for event in received}


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def test_a_full_disk_is_a_json_503_logged_once_shown_and_recovered(tmpfs, served, vendor):
    srv = served(name="data", **FAST_RETRIES)
    assert srv.data_dir == tmpfs
    srv.wait_serving()
    hook = vendor("webhook", batch_size=10)
    with srv.admin as admin:
        key = admin.post("/api/sources", json={"name": "web"}).json()["write_key"]
        create_destination(admin, name="hook", type="webhook",
                           settings=hook.destination_settings())
    send_batch(srv.url, key, [track("ada", i) for i in range(5)])
    hook.wait_for(5)
    slow = vendor("webhook")
    with srv.admin as admin:  # a replay that is still sending when the disk fills
        create_destination(admin, name="slow", type="webhook",
                           settings=slow.destination_settings(),
                           rate_limit={"events_per_second": 2})
        replay = admin.post("/api/replays", json={"destination": "slow"}).json()["id"]

    # Events stored while the vendor is down: delivered (and checkpointed) after the fill.
    hook.outage(True)
    send_batch(srv.url, key, [track("bob", i) for i in range(30)])
    filler = fill(tmpfs)

    answers = []
    for _ in range(200):
        r = httpx.post(f"{srv.url}/v1/batch", auth=(key, ""), json={"batch": big_batch(50)},
                       timeout=30)
        answers.append(r)
        if r.status_code != 200:
            break
    refused = answers[-1]
    assert refused.status_code == 503, (refused.status_code, refused.text[:300])
    assert refused.headers["content-type"] == "application/json"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["code"] == "storage_unavailable"
    assert "disk is full" in refused.json()["error"]["message"]
    for _ in range(20):  # more refusals in the same episode
        r = httpx.post(f"{srv.url}/v1/batch", auth=(key, ""), json={"batch": big_batch(50)})
        assert r.status_code == 503 and r.headers.get("retry-after"), r.text[:300]

    hook.outage(False)  # the pump delivers and cannot checkpoint
    with srv.admin as admin:
        failing = wait_until(lambda: (s := stats(admin, "hook"))["state"] == "error" and s,
                             what="the destination's error state")
        assert "disk is full" in failing["last_error"]
        held = wait_until(lambda: (r := admin.get(f"/api/replays/{replay}").json())["state"]
                          == "error" and r, what="the replay's error state")
        assert "disk is full" in held["error"]
        health = admin.get("/healthz").json()
        assert health["ok"] is False and "disk is full" in health["storage"]["reason"]
        scraped = admin.get("/metrics").text
        assert metric(scraped, "millpond_storage_unavailable") == 1
        assert metric(scraped, "millpond_storage_refused_writes_total") >= 21
        # Held while it cannot save its progress: at most the one batch (10) it sent past
        # its checkpoint, perhaps more than once, and nothing after it.
        assert len(unique(hook.received)) <= 5 + 10

        filler.unlink()  # space returns: no restart
        wait_until(lambda: stats(admin, "hook")["state"] == "running", what="running again")
        wait_until(lambda: admin.get(f"/api/replays/{replay}").json()["state"]
                   in ("running", "completed"), what="the replay going on")
        ok = httpx.post(f"{srv.url}/v1/batch", auth=(key, ""), json={"batch": big_batch(5)})
        assert ok.status_code == 200, ok.text
        # Then everything, the batch sent during the episode again included.
        stored = 5 + 30 + 50 * sum(r.status_code == 200 for r in answers) + 5
        wait_until(lambda: len(unique(hook.received)) == stored, what="every event")
        assert admin.get("/healthz").json()["ok"] is True
        assert metric(admin.get("/metrics").text, "millpond_storage_unavailable") == 0
    log = srv.err.read_text()
    assert log.count("storage unavailable: the disk is full") == 1, log[-3000:]
    assert log.count("storage writable again") == 1, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
