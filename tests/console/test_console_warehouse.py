"""The console's page of a storage destination: per-table loads, and no replay (its first
sync already holds history)."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import expect

from tests.support.delivery import send_batch
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow


def test_parquet_destination_page_shows_tables_and_refuses_replay(console, tmp_path):
    page, server = console.page, console.server
    tag = uuid.uuid4().hex[:8]
    source = server.create_source(f"wh-{tag}")
    send_batch(server.url, source["write_key"], [
        {"type": "track", "userId": "u1", "event": "Signed Up", "messageId": f"{tag}-{i}"}
        for i in range(40)])
    with server.admin as admin:
        r = admin.post("/api/destinations", json={
            "name": f"files-{tag}", "type": "parquet",
            "settings": {"path": str(tmp_path), "batch_interval_seconds": 5}})
        assert r.status_code == 201, r.text
        dest = r.json()
        wait_until(lambda: admin.get(f"/api/destinations/{dest['id']}/stats").json()
                   ["stats"].get("loads", {}).get("loads", 0) >= 1, timeout=60, what="load")
    console.go(f"/destinations/{dest['id']}")
    expect(page.locator("#not-replayable")).to_contain_text(
        "first sync already includes history")
    expect(page.get_by_role("button", name="Replay past data")).to_have_count(0)
    tables = page.get_by_role("region", name="Tables")
    expect(tables).to_contain_text(re.compile(r"loads"))
    expect(tables.get_by_role("row")).not_to_have_count(1)
    # every column fits the card (a partition's long name wraps), none clipped
    assert tables.locator(".table-wrap").evaluate("e => e.scrollWidth <= e.clientWidth")
    console.screenshot("destination-parquet")
    assert console.problems() == []
