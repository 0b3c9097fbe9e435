"""``millpond serve`` on the scale-out backend with ``--archive s3://…`` (#18 with #17): the
holder of the jobs lease seals ranges of the stream into Parquet files on S3, the stream
is purged of them, and the server still finds every event by messageId and replays them
exactly once."""

from __future__ import annotations

import uuid

from millpond.devcluster.s3 import ACCESS_KEY, REGION, SECRET_KEY
from tests.support.cluster import cluster_args
from tests.support.delivery import create_destination, send_batch, track
from tests.support.receiver import Receiver
from tests.support.server import ServerProcess
from tests.support.wait import wait_until


def test_events_archived_to_s3_and_purged_are_still_found_and_replayed_once(
        dev_cluster, tmp_path, place):
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    s3 = dev_cluster.s3.client()
    s3.create_bucket(Bucket=bucket)
    data = tmp_path / "data"
    data.mkdir()
    server = ServerProcess(data, args=[
        *cluster_args(dev_cluster), "--archive", f"s3://{bucket}/log",
        "--archive-endpoint", dev_cluster.s3.endpoint, "--archive-range", "50"],
        extra_env={"MILLPOND_STORAGE_PLACE": place, "MILLPOND_LEASE_SECONDS": "3",
                   "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                   "AWS_REGION": REGION}).start()
    receiver = Receiver()
    try:
        key = server.create_source("web")["write_key"]
        sent = [track(f"user{u}", n) for n in range(23) for u in range(10)]  # 230 events
        send_batch(server.url, key, sent)
        with server.admin as admin:
            def archived() -> dict | None:
                tiers = {t["name"]: t for t in admin.get("/api/storage").json()["tiers"]}
                return tiers if tiers.get("archive", {}).get("events") == 200 else None

            tiers = wait_until(archived, timeout=60, every=0.3, what="4 ranges archived")
            assert tiers["hot"]["events"] == 30  # the stream holds only the unsealed range
            stream = admin.get("/api/cluster").json()["stream"]
            assert (stream["messages"], stream["first_seq"], stream["last_seq"]) == (
                30, 201, 230)
            keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
            # each seal's file has a name of its own: log-<first>-<last>.<token>.parquet
            assert sorted(k.rsplit(".", 2)[0] for k in keys) == [
                f"log/log-{a:015d}-{a + 49:015d}" for a in (1, 51, 101, 151)]

            first = sent[0]["messageId"]  # seq 1: archived, no longer in the stream
            found = admin.get("/api/events", params={"message_id": first}).json()["events"]
            assert [e["messageId"] for e in found] == [first]
            listed = server.events()
            assert sorted(e["messageId"] for e in listed) == sorted(m["messageId"] for m in sent)

            create_destination(admin, name="late", type="webhook",
                               settings={"url": receiver.url, "batch_size": 25})
            # once this process holds the new destination's lease (its next renewal)
            r = wait_until(lambda: (x := admin.post("/api/replays", json={
                "destination": "late"})).status_code != 409 and x, timeout=30, every=0.3,
                what="the destination's lease")
            assert r.status_code == 201, r.text
            replay = r.json()["id"]
            done = wait_until(lambda: (x := admin.get(f"/api/replays/{replay}").json())[
                "state"] == "completed" and x, timeout=60, every=0.3, what="the replay")
        got = [e["messageId"] for e in receiver.events()]
        assert sorted(got) == sorted(m["messageId"] for m in sent)  # each exactly once
        assert receiver.order_errors() == []
        assert (done["report"]["scanned"], done["report"]["sent"]) == (230, 230), done
    finally:
        server.stop()
        receiver.stop()
