"""The console's Segments page: list with state and size, a form whose server-side
errors stand beside the field, a preview as one types a definition, a segment's members
(linking to People and to why each is in) and its Audience events, the why page (each
condition with its value, the membership history), a person's segments on their page,
and attacker-controlled names and ids shown as text."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from playwright.sync_api import expect

from tests.support.delivery import send_batch
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

HOSTILE = '<img src=x onerror="document.title=\'pwned\'">'


def test_preview_as_one_types_then_why_each_person_is_in_or_not(console):
    page, server = console.page, console.server
    tag = uuid.uuid4().hex[:6]
    order, ada, bob = f"Order Completed {tag}", f"ada-{tag}", f"bob-{tag}"
    source = server.create_source(f"shop-{tag}")
    send_batch(server.url, source["write_key"], [
        {"type": "identify", "userId": ada, "traits": {"plan": "pro"}},
        {"type": "track", "userId": ada, "event": order, "messageId": f"{tag}-1",
         "timestamp": "2024-11-02T10:00:00.000Z", "properties": {"total": 120}},
        {"type": "track", "userId": ada, "event": order, "messageId": f"{tag}-2",
         "timestamp": "2026-11-20T09:30:00.000Z", "properties": {"total": 45}},
        {"type": "identify", "userId": bob, "traits": {"plan": "free"}},
        {"type": "track", "userId": bob, "event": order, "messageId": f"{tag}-3",
         "timestamp": "2026-10-01T12:00:00.000Z", "properties": {"total": 80}},
    ])
    with server.admin as admin:
        wait_until(lambda: len(admin.get("/api/events", params={"event": order}).json()
                               ["events"]) == 3, timeout=30, what="events stored")

    console.nav("Segments")
    page.get_by_label("Key").fill(f"repeat-{tag}")
    page.get_by_label("Name").fill("Repeat buyers")
    box, preview = page.get_by_label("Definition (JSON)"), page.locator("#s-preview")
    expect(preview).to_contain_text("Type a definition")
    box.fill(json.dumps({"event": order}))
    expect(preview).to_contain_text("2 member(s) now")
    box.fill(json.dumps({"event": order, "at_least": 2}))
    expect(preview).to_contain_text("1 member(s) now")
    expect(preview.get_by_role("row")).to_have_count(2)  # the header and ada
    expect(preview.get_by_role("link")).to_have_text(
        [re.compile("^prf_")])  # to ada's page
    expect(preview).to_contain_text("2026-11-20T09:30:00.000Z")  # her second order
    box.fill(json.dumps({"event": order, "at_least": -1}))
    expect(preview).to_contain_text("definition.at_least")
    box.fill("{nope")
    expect(preview).to_contain_text("not JSON")
    with server.admin as admin:  # typing saved nothing
        assert f"repeat-{tag}" not in [s["key"] for s in
                                       admin.get("/api/segments").json()["segments"]]
    box.fill(json.dumps({"event": order, "at_least": 2}))
    expect(preview).to_contain_text("1 member(s) now")
    # A person's why beside the count; typing their id does not count everyone again.
    counted: list[str] = []
    page.on("request", lambda r: counted.append(r.url)
            if r.url.endswith("/segments/preview") else None)
    why, person = page.locator("#s-why"), page.get_by_label("Explain the preview for a person")
    person.fill(bob)
    expect(why).to_contain_text(f"{bob} (profile prf_")
    expect(why).to_contain_text("would not be a member")
    expect(why.locator("li.failed")).to_contain_text(f"event {order}: 1 counted")
    person.fill(ada)
    expect(why).to_contain_text("would be a member")
    expect(preview).to_contain_text("1 member(s) now")
    assert counted == []
    person.fill(bob)
    expect(why).to_contain_text("would not be a member")
    # A new definition: the count and the person's why both follow it.
    box.fill(json.dumps({"event": order}))
    expect(preview).to_contain_text("2 member(s) now")
    expect(why).to_contain_text(f"{bob} (profile prf_")
    expect(why).to_contain_text("would be a member")
    person.fill(f"nobody-{tag}")
    expect(why).to_contain_text(f"no person with id 'nobody-{tag}'")
    person.fill("")
    expect(why).to_be_hidden()
    person.fill(ada)
    # A window: her order before it is shown as not counted.
    box.fill(json.dumps({"event": order, "between": ["2026-01-01", "2027-01-01"]}))
    expect(why.locator("li.passed")).to_contain_text(
        f"event {order} from 2026-01-01T00:00:00.000Z to before 2027-01-01T00:00:00.000Z: "
        "1 counted")
    expect(why.locator("li.passed")).to_contain_text(
        "1 not counted, latest: 2024-11-02T10:00:00.000Z")
    box.fill(json.dumps({"event": order, "at_least": 2}))
    expect(preview).to_contain_text("1 member(s) now")
    expect(why).to_contain_text("would be a member")
    console.screenshot("segments")
    page.get_by_role("button", name="Save and build").click()
    with server.admin as admin:
        wait_until(lambda: admin.get(f"/api/segments/repeat-{tag}").json()["state"] ==
                   "ready", timeout=60, what="segment built")
    page.reload()
    expect(page.get_by_role("heading", name="Repeat buyers")).to_be_visible()
    console.screenshot("segment")
    # A building badge polls its state; once ready (or gone), the page reloads instead.
    for ref in (f"repeat-{tag}", f"gone-{tag}"):
        polled = page.request.get(f"{console.base}/segments/{ref}/state")
        assert polled.ok and polled.headers.get("hx-refresh") == "true", ref
    # In the list (a definition may be being typed), only the badge changes.
    listed = page.request.get(f"{console.base}/segments/repeat-{tag}/state?in=list")
    assert listed.ok and "hx-refresh" not in listed.headers and ">ready<" in listed.text()

    # Why ada is in: the count, her two orders (to the debugger), her entry.
    page.get_by_role("link", name=f"Why {ada} is a member").click()
    verdict = page.get_by_role("region", name=f"{ada} is a member")
    expect(verdict).to_contain_text(f"event {order}: 2 counted (at least 2)")
    expect(verdict.get_by_role("link", name=re.compile("^20"))).to_have_text(
        ["2026-11-20T09:30:00.000Z", "2024-11-02T10:00:00.000Z"])
    history = page.get_by_role("region", name="Membership history")
    expect(history.get_by_role("row")).to_have_count(2)
    expect(history).to_contain_text("Entered")
    expect(history).to_contain_text("2026-11-20T09:30:00.000Z")
    console.screenshot("segment-why")
    # Bob is not: one order; nothing in his history. Nobody: said beside the field.
    page.get_by_label(re.compile("^Person")).fill(bob)
    page.get_by_role("button", name="Explain").click()
    verdict = page.get_by_role("region", name=f"{bob} is not a member")
    expect(verdict).to_contain_text("1 counted")
    expect(page.get_by_role("region", name="Membership history")).to_contain_text(
        "No change recorded")
    page.get_by_label(re.compile("^Person")).fill(f"nobody-{tag}")
    page.get_by_role("button", name="Explain").click()
    expect(page.locator("#w-error")).to_contain_text(f"no person with id 'nobody-{tag}'")

    # Ada's page lists the segment, and it leads back to why.
    page.goto(f"{console.base}/people/{ada}")
    segments = page.get_by_role("region", name="Segments")
    expect(segments).to_contain_text("2026-11-20T09:30:00.000Z")
    # Her activity says which segment her Audience Entered is of, and links to it.
    entered = page.locator("#activity li.event").filter(has_text="Audience Entered")
    expect(entered).to_contain_text(f"Audience Entered of repeat-{tag} from computed")
    expect(entered.get_by_role("link", name=f"repeat-{tag}")).to_have_attribute(
        "href", re.compile(f"/segments/repeat-{tag}$"))
    segments.get_by_role("link", name=f"repeat-{tag}").click()
    expect(page.get_by_role("region", name=re.compile("is a member"))).to_be_visible()
    page.goto(f"{console.base}/people/{bob}")
    expect(page.get_by_role("region", name="Segments")).to_contain_text("In no segment")

    # The editor previews too, and knows a definition naming the segment is a cycle.
    page.goto(f"{console.base}/segments/repeat-{tag}")
    edit = page.get_by_label("Definition (JSON)")
    edit.fill(json.dumps({"any": [{"event": order}, {"in_segment": f"repeat-{tag}"}]}))
    expect(page.locator("#e-preview")).to_contain_text("cycle")
    edit.fill(json.dumps({"event": order}))
    expect(page.locator("#e-preview")).to_contain_text("2 member(s) now")
    page.get_by_label("Explain the preview for a person").fill(bob)
    expect(page.locator("#e-why")).to_contain_text("would be a member")
    # A definition on the segment: whether ada is in it, and since when.
    page.goto(f"{console.base}/segments")
    page.get_by_label("Definition (JSON)").fill(json.dumps({"in_segment": f"repeat-{tag}"}))
    page.get_by_label("Explain the preview for a person").fill(ada)
    expect(page.locator("#s-why li.passed")).to_contain_text(
        f"in segment repeat-{tag} since 2026-11-20T09:30:00.000Z")
    assert console.problems() == []


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
    # Ready once built; the member links to People; the entry is dated in event time.
    with server.admin as admin:
        wait_until(lambda: admin.get(f"/api/segments/buyers-{tag}").json()["state"] ==
                   "ready", timeout=60, what="segment built")
        wait_until(lambda: any(e.get("event") == "Audience Entered" for e in admin.get(
            "/api/events", params={"user_id": user}).json()["events"]), timeout=60,
            what="Audience Entered appended")
    page.reload()
    expect(page.get_by_text("ready", exact=True)).to_be_visible()
    expect(page.locator("main")).to_contain_text(f"buyers-{tag} · ready · 1 member")
    expect(page.locator("main")).not_to_contain_text("1 members")
    members = page.get_by_role("region", name="Members")
    expect(members.get_by_role("link", name=re.compile("^prf_"))).to_have_count(1)
    expect(members.get_by_role("link", name=f"Why {user} is a member")).to_have_count(1)
    expect(members).to_contain_text(user)
    audience = page.get_by_role("region", name="Recent Audience events")
    expect(audience.get_by_role("link", name="Audience Entered")).to_have_count(1)
    expect(audience).to_contain_text("2025-01-02T03:04:05.000Z")
    expect(audience).to_contain_text(user)
    assert page.title() != "pwned" and page.locator("img[src=x]").count() == 0

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
    expect(row).to_contain_text("ready")
    expect(row.get_by_role("cell").last).to_have_text("1")
    assert console.problems() == []
