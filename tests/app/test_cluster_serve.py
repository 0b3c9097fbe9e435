"""``millpond serve`` on the scale-out backend (#18): real ``millpond serve`` processes on
the session's dev cluster (3 NATS JetStream nodes, PostgreSQL).

Start-up faults are one line and exit 1; a collector whose log is gone answers 503 with
Retry-After and loses nothing once it is back; two workers share a webhook destination
through a lease, and a SIGKILLed owner's destination is taken over by the other."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import httpx
import pytest

from tests.support.cli import ok
from tests.support.cluster import cluster_args, cluster_server
from tests.support.delivery import create_destination, send_batch, track
from tests.support.receiver import Receiver
from tests.support.server import free_port
from tests.support.wait import wait_until


def _start(args: list[str], tmp_path, place: str, name: str = "data") -> subprocess.Popen[str]:
    env = {**os.environ, "MILLPOND_STORAGE_PLACE": place}
    return subprocess.Popen(
        [sys.executable, "-m", "millpond.cli.main", "serve", "--port", "0", "--data",
         str(tmp_path / name), *args], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _serve(args: list[str], tmp_path, place: str) -> subprocess.CompletedProcess[str]:
    return _finish(_start(args, tmp_path, place))


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_unreachable_nats_or_postgresql_at_start_is_one_line_naming_which(
        dev_cluster, tmp_path, place):
    dsn = dev_cluster.postgres.dsn()
    no_nats = _start(["--log", f"nats://127.0.0.1:{free_port()}", "--state", dsn],
                     tmp_path, place, "a")
    no_pg = _start(["--log", dev_cluster.nats.servers, "--state",
                    f"postgresql://postgres:x@127.0.0.1:{free_port()}/postgres"],
                   tmp_path, place, "b")
    line = _one_line(_finish(no_nats))
    assert "cannot reach NATS" in line and "connection refused" in line
    line = _one_line(_finish(no_pg))
    assert "cannot reach PostgreSQL" in line
    assert not _stream_exists(dev_cluster, place)  # nothing was created


def _stream_exists(cluster, name: str) -> bool:
    import nats
    import nats.js.errors

    async def look() -> bool:
        nc = await nats.connect(cluster.nats.urls)
        try:
            await nc.jetstream().stream_info(name)
            return True
        except nats.js.errors.NotFoundError:
            return False
        finally:
            await nc.close()

    return asyncio.run(look())


def test_a_stream_made_by_hand_with_other_settings_is_refused_naming_them(
        dev_cluster, tmp_path, place):
    import nats
    from nats.js.api import StorageType, StreamConfig

    async def make() -> None:
        nc = await nats.connect(dev_cluster.nats.urls)
        try:
            await nc.jetstream().add_stream(StreamConfig(
                name=place, subjects=[f"{place}.>"], num_replicas=1,
                storage=StorageType.MEMORY))
        finally:
            await nc.close()

    asyncio.run(make())
    line = _one_line(_serve(cluster_args(dev_cluster), tmp_path, place))
    assert f"stream {place} exists with settings the log cannot use" in line
    assert "storage=" in line and "num_replicas=1" in line and "(needs 3" in line


def test_the_collector_answers_503_with_retry_after_while_nats_is_down(
        dev_cluster, tmp_path, place):
    server = cluster_server(dev_cluster, tmp_path, "collector", place, role="collector")
    try:
        key = server.create_source("web")["write_key"]
        with server.admin as admin:
            status = admin.get("/api/cluster").json()
        assert [(p["role"], p["pid"]) for p in status["processes"]] == [
            ("collector", server.proc.pid)]
        assert status["leases"] == []  # a collector delivers nothing and runs no job
        before = [track("u1", n) for n in range(20)]
        send_batch(server.url, key, before)
        for node in dev_cluster.nats.nodes:
            node.stop()
        try:
            r = httpx.post(f"{server.url}/v1/track", auth=(key, ""), timeout=60,
                           json=track("u1", 20))
            assert r.status_code == 503, r.text
            assert int(r.headers["Retry-After"]) >= 1
            assert r.json()["error"]["code"] == "storage_unavailable"
        finally:
            for node in dev_cluster.nats.nodes:
                node.start(find_binary())
            dev_cluster.nats.wait_healthy()
        after = [track("u1", n) for n in range(20, 40)]

        def posted() -> bool:  # the stream's leader is elected again within seconds
            r = httpx.post(f"{server.url}/v1/batch", auth=(key, ""), timeout=60,
                           json={"batch": after})
            return r.status_code == 200

        wait_until(posted, timeout=60, every=0.5, what="the collector to take events again")
        ids = {e["messageId"] for e in server.events()}
        assert ids == {m["messageId"] for m in before + after}
    finally:
        server.stop()


def find_binary():
    from millpond.devcluster.nats import find_nats_server

    return find_nats_server()


@pytest.mark.serial  # heartbeats within a 3 s lease are checked
def test_two_workers_share_a_webhook_destination_and_one_takes_over_after_sigkill(
        dev_cluster, tmp_path, place):
    receiver = Receiver(delay=lambda: 0.002)
    a = cluster_server(dev_cluster, tmp_path, "a", place)
    b = cluster_server(dev_cluster, tmp_path, "b", place)
    try:
        key = a.create_source("web")["write_key"]
        with a.admin as admin:
            create_destination(admin, name="hook", type="webhook",
                               settings={"url": receiver.url, "batch_size": 20},
                               rate_limit={"events_per_second": 400})
            dest_id = admin.get("/api/destinations/hook").json()["id"]
        first = [track(f"user{u}", n) for n in range(10) for u in range(20)]
        send_batch(a.url, key, first[:100])
        send_batch(b.url, key, first[100:])  # both collect into the one log
        wait_until(lambda: len(receiver.events()) >= len(first), timeout=60,
                   what="the first events delivered")
        sent = [e["messageId"] for e in receiver.events()]
        assert sorted(sent) == sorted(m["messageId"] for m in first)  # each once
        owner = _owner(dev_cluster, place, f"destination:{dest_id}")
        victim, survivor = (a, b) if str(a.proc.pid) in owner.split(":") else (b, a)
        assert str(victim.proc.pid) in owner.split(":"), owner

        def caught_up() -> dict | None:  # the owner's checkpoint follows its deliveries
            status = json.loads(ok(a, "cluster", "status", "--json"))
            return status if status["destinations"][0]["events_behind"] == 0 else None

        status = wait_until(caught_up, timeout=20, every=0.3, what="the cursor saved")
        assert {(p["pid"], p["role"]) for p in status["processes"]} == {
            (a.proc.pid, "all"), (b.proc.pid, "all")}
        assert all(p["heartbeat_age"] < 3 for p in status["processes"])
        assert status["stream"]["replicas"] == 3 and status["stream"]["leader"]
        assert status["stream"]["messages"] == len(first)
        assert status["destinations"] == [{
            "id": dest_id, "name": "hook", "enabled": True, "owner": owner,
            "cursor": status["stream"]["last_seq"], "events_behind": 0, "lag_seconds": 0.0}]
        assert {lease["name"] for lease in status["leases"]} == {"jobs", f"destination:{dest_id}"}
        with survivor.admin as other:  # the non-owner shows the state the owner published
            stats = wait_until(lambda: (s := other.get("/api/destinations/hook/stats").json()[
                "stats"])["state"] != "elsewhere" and s, timeout=20, what="the owner's state")
            assert (stats["state"], stats["delivered_by"]) == ("running", owner)
            r = other.post("/api/destinations/hook/retry-now")
            assert r.status_code == 200 and r.json()["retried_now"] is False, r.text
            assert "not waiting to retry" in r.json()["message"]
        assert f"delivered by {owner} (its state as of" in ok(survivor, "destinations", "stats",
                                                              "hook")
        table = ok(b, "cluster", "status")
        assert f"3 replicas, leader {status['stream']['leader']}" in table

        second = [track(f"user{u}", n) for n in range(10, 60) for u in range(20)]
        send_batch(survivor.url, key, second)
        wait_until(lambda: len(receiver.events()) > len(first), timeout=30,
                   what="the owner to start on the second events")
        victim.kill()
        killed = time.monotonic()
        wait_until(lambda: {e["messageId"] for e in receiver.events()}
                   >= {m["messageId"] for m in second}, timeout=60,
                   what="the survivor to deliver the rest")
        taken = time.monotonic() - killed
        got = [e["messageId"] for e in receiver.events()]
        assert set(got) == {m["messageId"] for m in first + second}
        duplicates = len(got) - len(set(got))
        # at most what the killed owner had sent and not checkpointed: its in-flight batches
        assert duplicates <= 16 * 20, duplicates
        assert _first_arrivals_out_of_order(receiver.events()) == []
        new_owner = _owner(dev_cluster, place, f"destination:{dest_id}")
        assert str(survivor.proc.pid) in new_owner.split(":")
        print(f"\ntaken over and caught up {taken:.1f} s after SIGKILL (lease 3 s); "
              f"{duplicates} events sent twice")
    finally:
        a.stop()
        b.stop()
        receiver.stop()


def _first_arrivals_out_of_order(events: list[dict]) -> list[str]:
    """Users whose events, each counted at its first arrival, came out of order (a resend
    after a takeover repeats events, it must not reorder new ones)."""
    seen: set[str] = set()
    last: dict[str, int] = {}
    errors = []
    for e in events:
        if e["messageId"] in seen:
            continue
        seen.add(e["messageId"])
        user, n = e["userId"], e["properties"]["n"]
        if n < last.get(user, -1):
            errors.append(f"{user}: {n} after {last[user]}")
        last[user] = max(n, last.get(user, -1))
    return errors


def _owner(cluster, place: str, lease: str) -> str:
    import psycopg

    with psycopg.connect(cluster.postgres.dsn(), autocommit=True) as conn:
        row = conn.execute(f"SELECT owner FROM {place}.leases WHERE name = %s",  # type: ignore[arg-type]
                           (lease,)).fetchone()
    assert row is not None, f"no lease {lease}"
    return row[0]
