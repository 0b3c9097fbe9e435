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
