"""Segments on the scale-out backend: real ``millpond serve`` processes on the session's
dev cluster (3 NATS JetStream nodes, PostgreSQL). A segment saved through either process
is built by the one that follows the log (the jobs lease's holder), becomes ``ready`` with
the right members, is rebuilt when changed through the other, and then follows live
events."""

from __future__ import annotations

from tests.support.cluster import cluster_server
from tests.support.delivery import send_batch, track
from tests.support.wait import wait_until


def test_a_segment_saved_through_any_process_is_built_where_the_log_is_followed(
        dev_cluster, tmp_path, place):
    a = cluster_server(dev_cluster, tmp_path, "a", place)
    b = cluster_server(dev_cluster, tmp_path, "b", place)
    try:
        key = a.create_source("web")["write_key"]
        orders = [track(f"user{u}", n)
                  for u in range(6) for n in range(u % 3)]  # 0, 1 or 2 orders each
        send_batch(a.url, key, orders)

        def members(server, ref):
            with server.admin as admin:
                seg = admin.get(f"/api/segments/{ref}").json()
            return seg["members"] if seg["state"] == "ready" else None

        with a.admin as admin:  # one through each: one of them is not the builder
            assert admin.post("/api/segments", json={
                "key": "buyers", "definition": {"event": "Order Completed"}}).status_code == 201
        with b.admin as admin:
            assert admin.post("/api/segments", json={
                "key": "repeat", "definition": {"event": "Order Completed", "at_least": 2}}
            ).status_code == 201
        assert wait_until(lambda: members(b, "buyers"), timeout=60, what="buyers built") == 4
        assert wait_until(lambda: members(a, "repeat"), timeout=60, what="repeat built") == 2
        with b.admin as admin:
            assert admin.patch("/api/segments/buyers", json={"definition": {
                "event": "Order Completed", "at_least": 2}}).status_code == 200
        wait_until(lambda: members(a, "buyers") == 2, timeout=60, what="buyers rebuilt")
        send_batch(b.url, key, [track("user0", 7), track("user0", 8)])
        wait_until(lambda: members(a, "repeat") == 3, timeout=60, what="followed live")
    finally:
        a.stop()
        b.stop()
