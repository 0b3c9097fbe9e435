"""Regulations on the scale-out backend: real ``millpond serve`` processes on the
session's dev cluster (3 NATS JetStream nodes, PostgreSQL). A suppression accepted by one
process is in force in the others' collectors within a couple of seconds, and a deletion
accepted by a process that does not run the jobs is run by the one that does, so the
segment engine that follows the log stops counting the events that went."""

from __future__ import annotations

import re

from tests.support.cluster import cluster_server
from tests.support.delivery import send_batch, track
from tests.support.server import ServerProcess
from tests.support.wait import wait_until


def _suppressed(server: ServerProcess) -> float:
    with server.admin as admin:
        text = admin.get("/metrics").text
    return sum(float(v) for v in re.findall(
        r'^millpond_events_suppressed_total\{[^}]*\} (\S+)$', text, re.M))


def _naming(server: ServerProcess, ids: set[str]) -> list[dict]:
    return [e for e in server.events()
            if {e.get("userId"), e.get("anonymousId")} & ids]


def _members(server: ServerProcess, ref: str) -> set[str] | None:
    with server.admin as admin:
        seg = admin.get(f"/api/segments/{ref}").json()
        if seg["state"] != "ready":
            return None
        people = admin.get(f"/api/segments/{ref}/members").json()["people"]
    return {p["user_id"] for p in people}


def _jobs_holder(servers: list[ServerProcess]) -> ServerProcess | None:
    with servers[0].admin as admin:
        status = admin.get("/api/cluster").json()
    owner = next((lease["owner"] for lease in status["leases"]
                  if lease["name"] == "jobs" and lease["expires_in"] > 0), None)
    urls = {p["id"]: p["url"] for p in status["processes"]}
    return next((s for s in servers if owner and urls.get(owner) == s.url), None)


def test_regulations_are_in_force_and_run_across_the_cluster(dev_cluster, tmp_path, place):
    a = cluster_server(dev_cluster, tmp_path, "a", place)
    b = cluster_server(dev_cluster, tmp_path, "b", place)
    try:
        key = a.create_source("web")["write_key"]
        send_batch(a.url, key, [
            {"type": "identify", "userId": "dan", "anonymousId": "a-dan", "messageId": "d0"},
            track("dan", 1),
            track("xavier", 1, anonymousId="a-dan"),  # from dan's device: deleted with him
            track("xavier", 2),
            track("cat", 1)])
        with a.admin as admin:
            for key_, definition in (("buyers", {"event": "Order Completed"}),
                                     ("two", {"event": "Order Completed", "at_least": 2,
                                              "at_most": 2})):
                r = admin.post("/api/segments", json={"key": key_, "definition": definition})
                assert r.status_code == 201, r.text
        assert wait_until(lambda: _members(a, "two"), timeout=60, what="built") == {"xavier"}
        holder = wait_until(lambda: _jobs_holder([a, b]), timeout=30, what="jobs lease")
        other = b if holder is a else a

        # A suppression through one process: the other's collector stores nothing of hers
        # once it has read the regulation.
        with holder.admin as admin:
            r = admin.post("/api/regulations", json={"type": "suppress",
                                                     "user_ids": ["mallory"]})
            assert r.status_code == 201, r.text
            mallory = r.json()["id"]
        probe = iter(range(1000))

        def refused_by_other() -> bool:
            send_batch(other.url, key, [track("mallory", next(probe))])
            return _suppressed(other) > 0

        wait_until(refused_by_other, timeout=15, what="the suppression in force everywhere")
        stored, refused = len(_naming(a, {"mallory"})), _suppressed(other)
        send_batch(other.url, key, [track("mallory", 1000 + n) for n in range(5)])
        assert len(_naming(a, {"mallory"})) == stored
        assert _suppressed(other) == refused + 5

        def counted() -> bool:  # saved by the process that refused them
            with holder.admin as admin:
                return admin.get(f"/api/regulations/{mallory}").json()["suppressed"] \
                    == refused + 5

        wait_until(counted, timeout=15, what="the refusals counted on the regulation")

        # A deletion accepted by the process that does not run the jobs.
        with other.admin as admin:
            r = admin.post("/api/regulations", json={"type": "delete", "user_ids": ["dan"]})
            assert r.status_code == 201, r.text
            reg = r.json()["id"]

        def finished() -> bool:
            with a.admin as admin:
                return admin.get(f"/api/regulations/{reg}").json()["state"] == "finished"

        wait_until(finished, timeout=60, what="the deletion finished")
        assert _naming(a, {"dan", "a-dan"}) == []
        wait_until(lambda: _members(b, "two") == set(), timeout=30, what="xavier re-evaluated")
        # (mallory's probes stored before her suppression reached ``other`` count too)
        assert _members(b, "buyers") - {"mallory"} == {"xavier", "cat"}
        # The engine that follows the log counts xavier's orders from what is left: one
        # more makes two, not three.
        send_batch(other.url, key, [track("xavier", 3)])
        wait_until(lambda: _members(a, "two") == {"xavier"}, timeout=30,
                   what="xavier counted from what is left")
    finally:
        a.stop()
        b.stop()
