"""``POST /api/imports`` on a real server: the upload lands in the log and in profiles."""

from __future__ import annotations

import socket

import pytest

from tests.support.delivery import upload
from tests.support.server import ADMIN_TOKEN
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

CSV = (
    "\ufeffid;email;plan;_timestamp\n"
    "u1;a@x.io;pro;2024-01-02T00:00:00Z\n"
    "u1;a@x.io;free;2023-01-02T00:00:00Z\n"
    ";nobody@x.io;x;2024-01-01T00:00:00Z\n"
    'u2;"b;@x.io";"multi\nline";1700000000\n'
)


def test_upload_imports_rows_as_identify_events_once(server):
    source = server.create_source("crm", kind="import")
    r = upload(server, CSV, source="crm", file_name="people.csv", timestamp_column="_timestamp")
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["state"] == "completed", job
    assert job["summary"]["events_accepted"] == 3
    assert job["summary"]["rejected_by_reason"] == {"missing_id": 1}
    events = server.events(source=source["id"])
    assert sorted(e["userId"] for e in events) == ["u1", "u1", "u2"]
    assert all(e["type"] == "identify" for e in events)
    # the older row arrived later but the newer _timestamp wins in the profile
    with server.admin as c:
        person = c.get("/api/people/u1").json()
        assert person["traits"]["plan"] == "pro"
        assert c.get("/api/people/u2").json()["traits"]["email"] == "b;@x.io"
    again = upload(server, CSV, source="crm", file_name="people.csv",
                   timestamp_column="_timestamp").json()
    assert again["state"] == "completed"
    assert again["summary"]["events_accepted"] == 0
    assert again["summary"]["duplicates"] == 3
    assert len(server.events(source=source["id"])) == 3


def test_upload_errors_are_clear_and_leave_nothing_behind(server):
    """A refused upload keeps no copy of the file: a customer export left in the data dir
    without a job would stay for good, and no deletion searches it."""
    server.create_source("crm", kind="import")
    server.create_source("tr", kind="track")
    bad_column = upload(server, CSV, source="crm", id_column="nope")
    assert bad_column.status_code == 400
    assert "nope" in bad_column.json()["error"]["message"]
    assert upload(server, "", source="crm").status_code == 400
    assert upload(server, CSV, source="missing").status_code == 404
    wrong_kind = upload(server, CSV, source="tr")
    assert wrong_kind.status_code == 400
    assert "track source" in wrong_kind.json()["error"]["message"]
    with server.admin as admin:
        latin = admin.post("/api/imports", params={"source": "crm"},
                           content=b"id,name\nu1,Jos\xe9\n", headers={"Content-Type": "text/csv"})
    assert latin.status_code == 400
    assert "not UTF-8" in latin.json()["error"]["message"]
    assert server.events() == []
    imports = server.data_dir / "imports"
    assert not imports.exists() or list(imports.iterdir()) == []


def test_an_upload_cut_off_leaves_nothing_behind(server):
    """The client goes away half-way through the body: the part received is removed."""
    server.create_source("crm", kind="import")
    imports = server.data_dir / "imports"
    part = b"id,plan\n" + b"".join(b"u%d,pro\n" % i for i in range(20_000))
    head = (f"POST /api/imports?source=crm&file_name=cut.csv HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: text/csv\r\n"
            f"Content-Length: {len(part) * 10}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head + part)
        wait_until(lambda: any(imports.glob("*/cut.csv")), timeout=10,
                   what="the upload began to be written")
    wait_until(lambda: list(imports.iterdir()) == [], timeout=10,
               what="the part received was removed")
    assert server.events() == []


ORDERS = ("user_id,event,timestamp,revenue\n"
          "u1,Order Completed,2024-03-02T10:15:00Z,42.5\n")


def test_an_upload_without_its_kind_gets_it_from_the_file_or_is_asked_for_it(server):
    """An export of orders uploaded without a kind used to be imported as people (each
    row a person with the traits event, timestamp and revenue). JSON lines are events; a
    CSV is people unless its header has an event column, and then it must say."""
    source = server.create_source("crm", kind="import")
    asked = upload(server, ORDERS, source="crm", file_name="orders.csv")
    assert asked.status_code == 400
    error = asked.json()["error"]
    assert error["field"] == "kind"
    assert "orders.csv has an 'event' column" in error["message"]
    assert server.events() == []
    assert list((server.data_dir / "imports").iterdir()) == []

    events = upload(server, ORDERS, source="crm", file_name="orders.csv", kind="events")
    assert events.json()["kind"] == "events", events.text
    people = upload(server, ORDERS, source="crm", file_name="orders.csv", kind="people")
    assert people.json()["kind"] == "people", people.text
    assert upload(server, "id,plan\nu2,pro\n", source="crm").json()["kind"] == "people"
    with server.admin as admin:
        lines = admin.post("/api/imports", params={"source": "crm", "wait": "true",
                                                   "file_name": "h.jsonl"},
                           content=b'{"type": "track", "userId": "u3", "event": "Signed Up"}\n',
                           headers={"Content-Type": "application/x-ndjson"})
    assert lines.json()["kind"] == "events", lines.text
    stored = [(e["type"], e["userId"]) for e in server.events(source=source["id"])]
    assert stored == [("track", "u1"), ("identify", "u1"), ("identify", "u2"),
                      ("track", "u3")]


def test_cancel_stops_a_running_import_and_resume_finishes_it_exactly_once(server):
    """Cancel right after the upload (the import is still reading its file): it stops at a
    checkpoint with the rows stored so far; resume continues there; every row ends stored
    once."""
    server.create_source("big", kind="import")
    rows = 100_000
    body = "id,plan\n" + "".join(f"u{i},p{i % 7}\n" for i in range(rows))
    job = upload(server, body, source="big", file_name="big.csv", wait="false").json()
    assert job["state"] == "running"
    with server.admin as admin:
        cancelled = admin.post(f"/api/imports/{job['id']}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        stopped = cancelled.json()
        assert stopped["state"] == "cancelled", stopped
        assert stopped["error"] is None and stopped["progress"] is None
        part = stopped["summary"]
        assert part["completed"] is False and part["events_accepted"] < rows
        assert part["events_accepted"] == part["rows_read"] == part["last_row"] - 1
        assert _last_seq(server) == part["events_accepted"]

        again = admin.post(f"/api/imports/{job['id']}/cancel")
        assert again.status_code == 409
        assert "only a running import can be cancelled" in again.json()["error"]["message"]

        resumed = admin.post(f"/api/imports/{job['id']}/resume")
        assert resumed.status_code == 202, resumed.text
        assert resumed.json()["state"] == "running"
        done = _wait_for_end(admin, job["id"])
        assert done["state"] == "completed", done
        summary = done["summary"]
        assert summary["resumed_after_row"] == part["last_row"]
        assert summary["events_accepted"] == summary["rows_read"] == rows
        assert summary["duplicates"] == 0
        assert _last_seq(server) == rows

        # completed: nothing to resume, and its upload is gone
        finished = admin.post(f"/api/imports/{job['id']}/resume")
        assert finished.status_code == 409
        assert "only a failed, interrupted or cancelled" in finished.json()["error"]["message"]
        assert admin.post("/api/imports/imp_nope/cancel").status_code == 404
        assert admin.post("/api/imports/imp_nope/resume").status_code == 404


def _wait_for_end(admin, job_id: str) -> dict:
    """Poll the job until it leaves ``running`` (the API's own ``wait`` is for uploads)."""
    import time

    while (job := admin.get(f"/api/imports/{job_id}").json())["state"] == "running":
        time.sleep(0.1)
    return job


def _last_seq(server) -> int:
    import httpx

    return httpx.get(f"{server.url}/healthz").json()["last_seq"]


def test_resume_says_so_when_the_upload_is_gone(server):
    server.create_source("gone", kind="import")
    body = "id,plan\n" + "".join(f"g{i},p\n" for i in range(100_000))
    job = upload(server, body, source="gone", file_name="gone.csv", wait="false").json()
    with server.admin as admin:
        assert admin.post(f"/api/imports/{job['id']}/cancel").json()["state"] == "cancelled"
        (server.data_dir / "imports" / job["id"] / "gone.csv").unlink()
        r = admin.post(f"/api/imports/{job['id']}/resume")
        assert r.status_code == 409, r.text
        error = r.json()["error"]
        assert error["field"] == "file"
        assert "gone.csv) is gone; upload it again" in error["message"]
        assert admin.get(f"/api/imports/{job['id']}").json()["state"] == "cancelled"
