"""``millpond dev-cluster``: the engines start, answer on the URLs printed, and Ctrl-C stops
every process it started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import boto3
import httpx
import nats
import psycopg
import pytest
from nats.js.errors import NoStreamResponseError

from millpond.devcluster.s3 import ACCESS_KEY, REGION, SECRET_KEY
from tests.support.cli import like_a_terminal
from tests.support.delivery import send_batch, track
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie of a reaped-late child still answers kill(0): read its state
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ", 1)[1][0] != "Z"


async def jetstream_replicas(servers: list[str]) -> int:
    """Create a 3-replica stream through the cluster: it needs all three nodes."""
    nc = await nats.connect(servers)
    try:
        js = nc.jetstream()
        name = f"probe{uuid.uuid4().hex[:8]}"
        info = await js.add_stream(name=name, subjects=[f"{name}.>"], num_replicas=3)
        # A new replicated stream takes writes once its nodes have elected a leader: on
        # a loaded machine that took more than one publish's 5 s (a make test failure).
        deadline = time.monotonic() + 60
        while True:
            try:
                # the same message id: a try whose ack was lost is not stored twice
                ack = await js.publish(f"{name}.x", b"hello", timeout=5,
                                       headers={"Nats-Msg-Id": name})
                break
            except (NoStreamResponseError, TimeoutError):  # nats.errors.TimeoutError is one
                if time.monotonic() > deadline:
                    raise
        assert ack.seq == 1
        await js.delete_stream(name)
        return info.config.num_replicas or 0
    finally:
        await nc.close()


def test_dev_cluster_prints_its_engines_and_millponds_and_ctrl_c_stops_them_all():
    import asyncio

    proc = subprocess.Popen([sys.executable, "-m", "millpond.cli.main", "dev-cluster",
                             "--json", "--archive-range", "20"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=like_a_terminal)
    pids: list[int] = []
    try:
        text = ""
        while True:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            text += line
            if line.startswith("}"):
                break
        info = json.loads(text)
        pids = [*info["nats"]["pids"], info["postgresql"]["pid"], info["s3"]["pid"],
                *info["millpond"]["pids"]]
        assert len(set(pids)) == 7 and all(alive(p) for p in pids)

        # two millpond processes on the engines: one cluster, each sees both
        token = info["millpond"]["admin_token"]
        for url in info["millpond"]["urls"]:
            r = httpx.get(f"{url}/api/cluster", timeout=30,
                          headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200, r.text
            assert sorted(p["pid"] for p in r.json()["processes"]) == sorted(
                info["millpond"]["pids"])

        # their archive is on the S3 server: an event ingested through one process reads
        # back through the other, from the archive once its range is sealed
        assert info["millpond"]["archive"] == "s3://millpond/log"
        one, two = (httpx.Client(base_url=url, timeout=30,
                                 headers={"Authorization": f"Bearer {token}"})
                    for url in info["millpond"]["urls"])
        with one, two:
            r = one.post("/api/sources", json={"name": "web", "kind": "pipelines"})
            assert r.status_code == 201, r.text
            sent = [track(f"user{n % 3}", n) for n in range(25)]
            send_batch(str(one.base_url), r.json()["write_key"], sent)

            def archived() -> dict | None:
                tiers = {t["name"]: t for t in two.get("/api/storage").json()["tiers"]}
                return tiers if tiers["archive"]["events"] == 20 else None

            tiers = wait_until(archived, timeout=60, every=0.3, what="a range archived")
            assert tiers["hot"]["events"] == 5
            s3 = boto3.client("s3", endpoint_url=info["s3"]["endpoint"], region_name=REGION,
                              aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
            keys = [o["Key"] for o in s3.list_objects_v2(Bucket="millpond")["Contents"]]
            assert len(keys) == 1 and keys[0].startswith("log/log-000000000000001-"), keys
            first = sent[0]["messageId"]  # seq 1: read from the Parquet file on S3
            found = two.get("/api/events", params={"message_id": first}).json()["events"]
            assert [e["messageId"] for e in found] == [first]

        assert asyncio.run(jetstream_replicas(info["nats"]["urls"])) == 3
        with psycopg.connect(info["postgresql"]["url"]) as conn:
            assert conn.execute("SELECT 1 + 1").fetchone() == (2,)
        s3 = boto3.client("s3", endpoint_url=info["s3"]["endpoint"], region_name=REGION,
                          aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
        s3.create_bucket(Bucket="archive")
        s3.put_object(Bucket="archive", Key="k", Body=b"v")
        assert s3.get_object(Bucket="archive", Key="k")["Body"].read() == b"v"

        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 130, proc.stderr.read()  # as every command after Ctrl-C
        assert [p for p in pids if alive(p)] == []
        assert "Traceback" not in proc.stderr.read()
    finally:
        _stop(proc, pids)


def _stop(proc: subprocess.Popen, pids: list[int]) -> None:
    """After a failed assertion too: Ctrl-C, which stops the engines with the command (a
    SIGKILL of the command alone once left five engines running after a failure), then
    whatever is still alive."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGINT)  # each engine's clean stop (PostgreSQL: fast)
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_dev_cluster_without_postgresql_says_so_in_one_line(tmp_path):
    # a PATH and interpreter without PostgreSQL's binaries: Debian's directory is hidden by
    # pointing the search at an empty one
    env = {**os.environ, "MILLPOND_PG_BIN": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "millpond.cli.main", "dev-cluster"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "initdb" in lines[0] and "Traceback" not in result.stderr
