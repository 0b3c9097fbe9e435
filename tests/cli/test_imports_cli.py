"""``millpond import list`` and ``import status``: the twins of ``GET /api/imports[/{id}]``,
against a real server and imports uploaded to it (``POST /api/imports``)."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.cli import fails, millpond, ok
from tests.support.delivery import upload
from tests.support.server import ServerProcess

pytestmark = pytest.mark.slow

PEOPLE = "id,email,plan\nu1,a@x.io,pro\nu2,b@x.io,free\n,nobody@x.io,x\n"


def started(server: ServerProcess, body: str, **params: str) -> dict:
    r = upload(server, body, **params)
    assert r.status_code == 202, r.text
    return r.json()


def api_job(server: ServerProcess, job_id: str) -> dict:
    with server.admin as admin:
        r = admin.get(f"/api/imports/{job_id}")
    r.raise_for_status()
    return r.json()


def test_list_and_status_show_an_uploaded_import(shared_server) -> None:
    source = shared_server.create_source("cli-imports", kind="import")
    job = started(shared_server, PEOPLE, source="cli-imports", file_name="people.csv")
    assert job["state"] == "completed", job

    listed = json.loads(ok(shared_server, "import", "list", "--json"))
    [mine] = [j for j in listed if j["id"] == job["id"]]
    assert mine == api_job(shared_server, job["id"])
    table = ok(shared_server, "import", "list")
    assert job["id"] in table and "completed" in table and "people.csv" in table

    shown = json.loads(ok(shared_server, "import", "status", job["id"], "--json"))
    assert shown == api_job(shared_server, job["id"])
    assert ok(shared_server, "import", "status", job["id"], "--field", "state") == "completed\n"
    assert shown["source_id"] == source["id"] and shown["kind"] == "people"
    assert shown["summary"]["events_accepted"] == 2
    assert shown["summary"]["rejected_by_reason"] == {"missing_id": 1}

    text = ok(shared_server, "import", "status", job["id"])
    assert f"import {job['id']}: completed" in text and "people.csv" in text
    assert "events accepted" in text and "missing_id" in text
    assert "on the server" in text  # the error report is a file of the server's


def test_status_watch_waits_for_the_end(shared_server) -> None:
    shared_server.create_source("cli-imports-big", kind="import")
    rows = 50_000
    body = "id,plan\n" + "".join(f"u{i},p{i % 7}\n" for i in range(rows))
    job = started(shared_server, body, source="cli-imports-big", file_name="big.csv",
                  wait="false")
    watched = json.loads(ok(shared_server, "import", "status", job["id"], "--watch", "--json"))
    assert watched["state"] == "completed", watched
    assert watched["progress"] is None
    assert watched["summary"]["rows_read"] == rows
    assert watched["summary"]["events_accepted"] == rows
    text = ok(shared_server, "import", "status", job["id"], "--watch")
    assert f"import {job['id']}: completed" in text
    events = httpx.get(f"{shared_server.url}/healthz").json()["last_seq"]
    assert events >= rows


def test_mistakes_are_one_line(shared_server) -> None:
    fails(millpond(shared_server, "import", "status", "imp_nope"), "no import 'imp_nope'")
    missing = millpond(shared_server, "import", "status")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_cancel_and_resume_are_the_api_twins(shared_server) -> None:
    shared_server.create_source("cli-imports-cancel", kind="import")
    rows = 100_000
    body = "id,plan\n" + "".join(f"c{i},p{i % 7}\n" for i in range(rows))
    job = started(shared_server, body, source="cli-imports-cancel", file_name="stop.csv",
                  wait="false")
    stopped = json.loads(ok(shared_server, "import", "cancel", job["id"], "--json"))
    assert stopped == api_job(shared_server, job["id"])
    assert stopped["state"] == "cancelled", stopped
    assert stopped["summary"]["events_accepted"] < rows
    fails(millpond(shared_server, "import", "cancel", job["id"]),
          "only a running import can be cancelled")

    done = json.loads(ok(shared_server, "import", "resume", job["id"], "--watch", "--json"))
    assert done["state"] == "completed", done
    assert done["summary"]["events_accepted"] == done["summary"]["rows_read"] == rows
    assert done["summary"]["resumed_after_row"] == stopped["summary"]["last_row"]
    fails(millpond(shared_server, "import", "resume", job["id"]),
          "only a failed, interrupted or cancelled import can be resumed")
    fails(millpond(shared_server, "import", "cancel", "imp_nope"), "no import 'imp_nope'")
    fails(millpond(shared_server, "import", "resume", "imp_nope"), "no import 'imp_nope'")
