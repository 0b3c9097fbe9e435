"""An archiving ``millpond serve`` on the cluster backend SIGKILLed in the middle of a seal
(#18 with #17): the other process takes the jobs lease, takes the archiver over and seals
the range again; no event is lost or stored twice, the range ends archived and purged
from the stream, and the bucket holds exactly the files the manifest lists."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from tests.support.cluster import cluster_args
from tests.support.delivery import send_batch, track
from tests.support.server import ServerProcess
from tests.support.wait import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.serial]  # a 3 s lease decides the takeover

#: Events per range: two row groups, so the seal reads its range for a while (about a
#: second on the 2-core machine) with its server-side cursor open.
RANGE = 20_000


def _query(dsn: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


def test_an_archiver_killed_mid_seal_loses_nothing_and_the_other_seals_it(
        dev_cluster, tmp_path, place):
    dsn = dev_cluster.postgres.dsn()
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    s3 = dev_cluster.s3.client()
    s3.create_bucket(Bucket=bucket)
    creds = dev_cluster.s3.credentials()

    def start(name: str) -> ServerProcess:
        data = tmp_path / name
        data.mkdir()
        return ServerProcess(data, args=[
            *cluster_args(dev_cluster), "--archive", f"s3://{bucket}/log",
            "--archive-endpoint", dev_cluster.s3.endpoint, "--archive-range", str(RANGE)],
            extra_env={"MILLPOND_STORAGE_PLACE": place, "MILLPOND_LEASE_SECONDS": "3",
                       **creds}).start()

    def jobs_owner() -> str | None:
        rows = _query(dsn, f"SELECT owner FROM {place}.leases WHERE name = 'jobs'")
        return rows[0][0] if rows else None

    archiver = start("a")
    other = None
    try:
        # the first process holds the jobs lease, so it is the one that will seal
        wait_until(lambda: (o := jobs_owner()) and str(archiver.proc.pid) in o.split(":"),
                   timeout=30, every=0.1, what="the jobs lease")
        other = start("b")
        key = archiver.create_source("web")["write_key"]
        sent = [track(f"user{n % 50}", n) for n in range(RANGE + 500)]
        half = len(sent) // 2
        with ThreadPoolExecutor(2) as pool:  # both collect into the one log
            for f in [pool.submit(send_batch, archiver.url, key, sent[:half]),
                      pool.submit(send_batch, other.url, key, sent[half:])]:
                f.result()

        # the seal reads its range through a server-side cursor (the index's rows, their
        # bodies from the stream) while it writes the file: kill it then
        def sealing() -> bool:
            return bool(_query(dsn, "SELECT 1 FROM pg_stat_activity WHERE query LIKE"
                                    " '%%archive_seal%%' AND state <> 'idle'"))

        wait_until(sealing, timeout=60, every=0.01, what="the seal under way")
        archiver.kill()
        assert _query(dsn, f"SELECT name FROM {place}.archive_files") == []  # mid-seal

        with other.admin as admin:
            def archived() -> dict | None:
                tiers = {t["name"]: t for t in admin.get("/api/storage").json()["tiers"]}
                return tiers if tiers["archive"]["events"] == RANGE else None

            # the lease expires, the other takes the jobs over and seals the range again
            tiers = wait_until(archived, timeout=60, every=0.2, what="the range archived")
            assert tiers["hot"]["events"] == 500
            assert str(other.proc.pid) in (jobs_owner() or "").split(":")
            stream = admin.get("/api/cluster").json()["stream"]
            assert (stream["messages"], stream["first_seq"], stream["last_seq"]) == (
                500, RANGE + 1, RANGE + 500)

        listed = {row[0] for row in _query(dsn, f"SELECT name FROM {place}.archive_files")}
        keys = {o["Key"].removeprefix("log/")
                for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
        assert len(listed) == 1 and keys == listed  # no orphan, nothing listed missing

        stored = other.events()
        assert sorted(e["seq"] for e in stored) == list(range(1, RANGE + 501))
        ids = [e["messageId"] for e in stored]
        assert len(set(ids)) == len(ids)
        assert sorted(ids) == sorted(m["messageId"] for m in sent)
    finally:
        archiver.stop()
        if other is not None:
            other.stop()
