"""The console's Segments page: list with state and size, a form whose server-side
errors stand beside the field, a segment's members (linking to People) and its Audience
events, with attacker-controlled names and ids shown as text."""

from __future__ import annotations

import json
import uuid

import pytest
from playwright.sync_api import expect

from tests.support.delivery import send_batch
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

HOSTILE = '<img src=x onerror="document.title=\'pwned\'">'


def test_create_a_segment_see_its_members_and_audience_events(console):
    page, server = console.page, console.server
    tag = uuid.uuid4().hex[:8]
    user = f"{HOSTILE}-{tag}"
    source = server.create_source(f"seg-{tag}")
    send_batch(server.url, source["write_key"], [
        {"type": "track", "userId": user, "event": f"Bought {tag}", "messageId": f"{tag}-1",
         "timestamp": "2025-01-02T03:04:05.000Z", "properties": {"total": 70}},
        {"type": "track", "userId": f"other-{tag}", "event": "Viewed", "messageId": f"{tag}-2"},
    ])
    with server.admin as admin:
        wait_until(lambda: admin.get("/api/events", params={"user_id": user}).json()
                   ["events"], timeout=30, what="events stored")

    console.nav("Segments")
    expect(page.get_by_role("heading", name="Segments", exact=True)).to_be_visible()
    # A bad definition: the server's words, beside the definition box, nothing saved.
    page.get_by_label("Key").fill(f"buyers-{tag}")
    page.get_by_label("Name").fill(f"{HOSTILE} buyers")
    page.get_by_label("Definition (JSON)").fill(json.dumps(
        {"event": f"Bought {tag}", "at_least": -1}))
    page.get_by_role("button", name="Save and build").click()
    box = page.get_by_label("Definition (JSON)")
    expect(box).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#s-error")).to_contain_text("definition.at_least")
    with server.admin as admin:
        keys = [s["key"] for s in admin.get("/api/segments").json()["segments"]]
    assert f"buyers-{tag}" not in keys
    # Not JSON at all: the same place, the same kind of answer.
    box.fill("{nope")
    page.get_by_role("button", name="Save and build").click()
    expect(page.locator("#s-error")).to_contain_text("not JSON")

    box.fill(json.dumps({"event": f"Bought {tag}", "where": "properties.total > 50"}))
    page.get_by_role("button", name="Save and build").click()
    expect(page.get_by_role("heading", name=f"{HOSTILE} buyers")).to_be_visible()
    # Live once built; the member links to People; the entry is dated in event time.
    with server.admin as admin:
        wait_until(lambda: admin.get(f"/api/segments/buyers-{tag}").json()["state"] ==
                   "ready", timeout=60, what="segment built")
        wait_until(lambda: any(e.get("event") == "Audience Entered" for e in admin.get(
            "/api/events", params={"user_id": user}).json()["events"]), timeout=60,
            what="Audience Entered appended")
    page.reload()
    expect(page.get_by_text("live", exact=True)).to_be_visible()
    members = page.get_by_role("region", name="Members")
    expect(members.get_by_role("link")).to_have_count(1)
    expect(members).to_contain_text(user)
    audience = page.get_by_role("region", name="Recent Audience events")
    expect(audience.get_by_role("link", name="Audience Entered")).to_have_count(1)
    expect(audience).to_contain_text("2025-01-02T03:04:05.000Z")
    expect(audience).to_contain_text(user)
    assert page.title() != "pwned" and page.locator("img[src=x]").count() == 0
    console.screenshot("segment")

    # Editing: an unknown op is refused beside the box; the stored definition stays.
    edit = page.get_by_label("Definition (JSON)")
    edit.fill(json.dumps({"trait": "plan", "op": "like", "value": "pro"}))
    page.get_by_role("button", name="Save and rebuild").click()
    expect(page.locator("#e-error")).to_contain_text("definition.op")
    with server.admin as admin:
        stored = admin.get(f"/api/segments/buyers-{tag}").json()
    assert stored["definition"]["event"] == f"Bought {tag}"

    console.nav("Segments")
    row = page.get_by_role("row").filter(has_text=f"buyers-{tag}")
    expect(row).to_contain_text("live")
    expect(row.get_by_role("cell").last).to_have_text("1")
    console.screenshot("segments")
    assert console.problems() == []
