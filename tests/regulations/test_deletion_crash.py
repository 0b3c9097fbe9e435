"""A deletion is a durable job: SIGKILL the server in the middle of one (its stores done,
a vendor's deletion call in flight, the ids not yet redacted nor the files scrubbed),
start it again, and the deletion completes: every store and destination settled, the
vendor asked, and no byte of the person left in the data dir."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.support.delivery import create_destination, send_batch
from tests.support.wait import wait_until


def _files_with(data_dir: Path, needles: list[bytes]) -> list[str]:
    return [f"{p.name} holds {n!r}" for p in sorted(data_dir.rglob("*")) if p.is_file()
            for n in needles if n in p.read_bytes()]


def test_sigkill_mid_deletion_then_restart_completes_it(server, vendor):
    tag = uuid.uuid4().hex[:10]
    ada, secret = f"ada-{tag}", f"secret-{tag}"
    cio = vendor("customerio")
    web = server.create_source("web")
    with server.admin as admin:
        create_destination(admin, name="cio", type="customerio",
                           settings=cio.destination_settings())
        send_batch(server.url, web["write_key"], [
            {"type": "identify", "userId": ada, "traits": {"note": secret},
             "messageId": f"{tag}-id"},
            *({"type": "track", "userId": ada, "event": "Clicked",
               "properties": {"note": secret}, "messageId": f"{tag}-{i}"} for i in range(20)),
            *({"type": "track", "userId": f"bob-{i}", "event": "Clicked",
               "messageId": f"{tag}-b{i}"} for i in range(20))])
        wait_until(lambda: admin.get(f"/api/people/{ada}").status_code == 200,
                   what="the profile")
        cio.delay_seconds = 60  # the vendor hangs: the job waits in its destination step
        reg = admin.post("/api/regulations", json={"type": "delete", "user_ids": [ada]}).json()
        wait_until(lambda: any(r.method == "DELETE" for r in cio.requests),
                   what="the deletion call in flight")
        mid = admin.get(f"/api/regulations/{reg['id']}").json()
        assert mid["state"] == "running"
        assert mid["stores"]["events"]["state"] == "done"
        assert mid["stores"]["scrub"]["state"] == "pending"
        assert mid["destinations"][next(iter(mid["destinations"]))]["state"] == "pending"
    server.kill()
    assert _files_with(server.data_dir, [ada.encode()])  # not finished: the ids are there
    cio.delay_seconds = 0
    server.start()
    with server.admin as admin:
        wait_until(lambda: admin.get(f"/api/regulations/{reg['id']}").json()["state"]
                   == "finished", timeout=60, what="the deletion resumed and finished")
        done = admin.get(f"/api/regulations/{reg['id']}").json()
        assert {n: s["state"] for n, s in done["stores"].items()} == {
            "dead_letters": "done", "events": "done", "rejections": "done", "import_files": "done",
            "profiles": "done", "segment_memberships": "done", "scrub": "done"}
        assert done["stores"]["events"]["removed"] == 21
        assert [d["state"] for d in done["destinations"].values()] == ["done"]
        assert admin.get(f"/api/people/{ada}").status_code == 404
        assert len(server.events()) == 20  # Bob's, untouched
    wait_until(lambda: ada in cio.deleted, what="the vendor got the deletion")
    assert _files_with(server.data_dir, [ada.encode(), secret.encode()]) == []
