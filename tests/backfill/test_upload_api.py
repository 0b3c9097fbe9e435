"""``POST /api/imports`` on a real server: the upload lands in the log and in profiles."""

from __future__ import annotations

import pytest

from tests.support.delivery import upload

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


def test_upload_errors_are_clear(server):
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
    assert server.events() == []


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
