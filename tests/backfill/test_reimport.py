"""Re-importing an edited file stores only what changed (#13 item 3), on a real server.

The natural workflow: import, read the error report, fix the bad row, import the file
again. Only the fixed row is new; every other row is acknowledged as a duplicate and no
destination receives it twice.
"""

from __future__ import annotations

import random

import pytest

from tests.support.delivery import upload
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

ROWS = 10_000


def _people(rows: list[list[str]]) -> str:
    return "id,email,plan,seats\n" + "".join(",".join(r) + "\n" for r in rows)


def test_editing_one_row_of_ten_thousand_imports_exactly_one_event(server) -> None:
    server.create_source("crm", kind="import")
    rows = [[f"user-{i:05d}", f"u{i}@example.com", "pro", str(i % 7)] for i in range(ROWS)]
    first = upload(server, _people(rows), source="crm", file_name="people.csv").json()
    assert first["state"] == "completed", first
    assert first["summary"]["events_accepted"] == ROWS

    rows[5000][2] = "enterprise"  # the fix a user makes after reading the report
    second = upload(server, _people(rows), source="crm", file_name="people.csv").json()
    assert second["state"] == "completed", second
    assert (second["summary"]["events_accepted"], second["summary"]["duplicates"]) == (1, ROWS - 1)
    stored = server.events(user_id="user-05000")
    assert sorted(e["traits"]["plan"] for e in stored) == ["enterprise", "pro"]
    with server.admin as c:
        assert c.get("/api/people/user-05000").json()["traits"]["plan"] in ("pro", "enterprise")

    random.Random(7).shuffle(rows)  # the same rows in another order: nothing new
    third = upload(server, _people(rows), source="crm", file_name="export-2.csv").json()
    assert (third["summary"]["events_accepted"], third["summary"]["duplicates"]) == (0, ROWS)
    assert len(server.events()) == ROWS + 1


def test_a_reimport_sends_destinations_only_the_new_row(server, vendor) -> None:
    hook = vendor("webhook")
    server.create_source("crm", kind="import")
    with server.admin as c:
        r = c.post("/api/destinations", json={"name": "hook", "type": "webhook",
                                              "settings": hook.destination_settings()})
        assert r.status_code == 201, r.text
    rows = [[f"user-{i}", f"u{i}@example.com", "pro", "1"] for i in range(200)]
    upload(server, _people(rows), source="crm", file_name="people.csv")
    hook.wait_for(200)
    rows[10][2] = "team"
    upload(server, _people(rows), source="crm", file_name="people.csv")
    hook.wait_for(201)
    wait_until(lambda: _delivered(server) >= 201, what="the second import's delivery")
    assert len(hook.received) == 201 and hook.duplicates == 0
    assert [r["traits"]["plan"] for r in hook.received[200:]] == ["team"]


def _delivered(server) -> int:
    with server.admin as c:
        stats = c.get("/api/destinations/hook/stats").json()["stats"]
    return stats["sent"] + sum(stats["skipped"].values())
