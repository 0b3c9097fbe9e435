"""Browser journeys through the console, part one: sign in, sources and snippets, the
Debugger's live tail, imports, people, and escaping of hostile event payloads."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from tests.console.conftest import sign_in
from tests.support.delivery import send_batch
from tests.support.server import ADMIN_TOKEN

pytestmark = pytest.mark.slow

NAV = ["Overview", "Sources", "Debugger", "Destinations", "Replays", "Imports", "People",
       "Segments", "Regulations"]


def test_sign_in_refuses_a_wrong_token_and_guards_every_page(chromium, shared_server):
    context = chromium.new_context()
    page = context.new_page()
    page.goto(shared_server.url + "/console/debugger")
    expect(page).to_have_url(re.compile(r"/console/sign-in\?next="))
    sign_in(page, shared_server, token="not-the-token")
    expect(page.get_by_role("alert")).to_contain_text("not the admin token")
    sign_in(page, shared_server)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    cookie = next(c for c in context.cookies() if c["name"] == "millpond_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    links = page.get_by_role("navigation", name="Main").get_by_role("link")
    assert links.all_inner_texts() == NAV
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.goto(shared_server.url + "/console/sources")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    context.close()


def test_create_a_source_and_copy_its_snippet(console):
    page = console.nav("Sources")
    page.get_by_label("Name").fill("website")
    page.get_by_label("Kind", exact=True).select_option("pipelines")
    page.get_by_role("button", name="Create source").click()
    expect(page.get_by_role("heading", name="Source website")).to_be_visible()
    with console.server.admin as admin:
        source = admin.get("/api/sources/website").json()
        expected = admin.get("/api/sources/website/snippet", params={"sdk": "segment"}).json()
    assert source["write_key"] not in page.content()  # masked until revealed
    page.get_by_role("button", name="Reveal write key").click()
    expect(page.locator("#write-key-value")).to_have_text(source["write_key"])
    page.get_by_role("button", name="Show segment snippet").click()
    snippet = page.get_by_label("segment snippet")
    expect(snippet).to_have_text(expected["text"])
    copy = page.get_by_role("button", name="Copy snippet")
    copy.click()
    expect(page.get_by_role("button", name="Copied")).to_have_attribute(
        "data-copied", expected["text"])
    console.screenshot("sources")
    assert not console.problems()


def test_set_a_sources_retention_and_read_a_refusal(console):
    page = console.nav("Sources")
    page.get_by_label("Name").fill("kept-a-while")
    page.get_by_label("Retention").fill("400d")
    page.get_by_role("button", name="Create source").click()
    expect(page.get_by_role("heading", name="Source kept-a-while")).to_be_visible()
    expect(page.get_by_label("Retention")).to_have_value("400d")
    page.get_by_label("Retention").fill("400")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#s-retention-err")).to_contain_text("missing unit")
    with console.server.admin as admin:
        assert admin.get("/api/sources/kept-a-while").json()["retention"] == "400d"
    page.get_by_label("Retention").fill("26w")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_label("Retention")).to_have_value("26w")
    with console.server.admin as admin:
        assert admin.get("/api/sources/kept-a-while").json()["retention"] == "26w"
        tiers = admin.get("/api/storage").json()["tiers"]
    line = console.nav("Overview").locator("#storage-tiers")
    expect(line).to_contain_text(f"hot {tiers[0]['events']:,} events")
    expect(line).to_contain_text("archive 0 events")
    assert not console.problems()


def test_events_appear_in_the_debugger_without_reloading(console):
    key = console.server.create_source("app-debug")["write_key"]
    page = console.nav("Debugger")
    expect(page.locator("#dbg-status")).to_have_text("live")
    marker = uuid.uuid4().hex[:8]
    send_batch(console.server.url, key, [
        {"type": "track", "userId": "dbg-user", "event": f"Live {marker}",
         "properties": {"plan": "pro"}},
        {"type": "track", "userId": "dbg-user"},  # no event name: rejected at index 1
    ])
    entry = page.locator("#dbg-feed li.event", has_text=f"Live {marker}")
    expect(entry).to_be_visible()
    rejected = page.locator("#dbg-feed li.rejected").first
    expect(rejected).to_contain_text("index 1")
    expect(rejected).to_contain_text("event")
    entry.locator("summary").click()
    expect(entry.get_by_label("SDK call")).to_contain_text('analytics.track({')
    expect(entry.get_by_label("Raw JSON")).to_contain_text('"plan": "pro"')
    console.screenshot("debugger")

    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#dbg-status")).to_have_text("paused")
    send_batch(console.server.url, key, [{"type": "track", "userId": "dbg-user",
                                           "event": f"While paused {marker}"}])
    page.wait_for_timeout(1000)
    expect(page.get_by_text(f"While paused {marker}")).to_have_count(0)
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("li.event", has_text=f"While paused {marker}")).to_be_visible()

    # Filters: an FQL syntax error is shown on the form; a good filter keeps its events.
    page.get_by_label("Filter").fill('event = ')
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#dbg-filter-err")).to_contain_text("filter")
    page.get_by_label("Filter").fill(f'event = "Filtered {marker}"')
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#dbg-status")).to_have_text("live")
    send_batch(console.server.url, key, [
        {"type": "track", "userId": "dbg-user", "event": f"Other {marker}"},
        {"type": "track", "userId": "dbg-user", "event": f"Filtered {marker}",
         "messageId": f"mid-{marker}"}])
    expect(page.locator("li.event", has_text=f"Filtered {marker}")).to_be_visible()
    expect(page.locator("li.event", has_text=f"Other {marker}")).to_have_count(0)

    page.get_by_label("Jump to messageId").fill(f"mid-{marker}")
    page.get_by_role("button", name="Find event").click()
    expect(page.get_by_role("heading", name=re.compile(f"Filtered {marker}"))).to_be_visible()
    assert not console.problems()


def test_upload_a_csv_and_read_its_error_report(console):
    console.server.create_source("crm-console", kind="import")
    page = console.nav("Imports")
    csv = ("id,email,plan,updated_at\n"
           "imp-1,ada@example.com,pro,2026-03-01T09:00:00Z\n"
           "imp-2,grace@example.com,team,not-a-time\n"
           ",nobody@example.com,free,2026-03-01T09:00:00Z\n")
    page.get_by_label("File", exact=True).set_input_files(
        files=[{"name": "people.csv", "mimeType": "text/csv", "buffer": csv.encode()}])
    page.get_by_label("Source", exact=True).select_option(label="crm-console (import)")
    page.get_by_label("Kind", exact=True).select_option("people")
    page.get_by_text("Options (the CLI's flags)").click()
    page.get_by_label("timestamp column").fill("updated_at")
    page.get_by_role("button", name="Upload and import").click()
    expect(page.locator("#import-state")).to_have_text("completed")
    expect(page.locator("#import-rows")).to_have_text("3")
    expect(page.locator("#import-rejected")).to_have_text("2")
    page.reload()
    report = page.locator("#error-report")
    expect(report.locator("tbody tr")).to_have_count(2)
    expect(report).to_contain_text("updated_at")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the error report (CSV)").click()
    text = Path(download.value.path()).read_text()
    assert text.startswith("row,line,column,code,reason") and "not-a-time" in text
    console.screenshot("imports")
    assert not console.problems()


def test_an_upload_left_to_find_its_kind_asks_for_it_when_the_rows_look_like_events(
        console):
    """Kind "from the file": a CSV with an event column is refused with the Kind field
    marked (it used to become people with event traits), and nothing is kept of it."""
    console.server.create_source("crm-kind", kind="import")
    page = console.nav("Imports")
    csv = "user_id,event,timestamp\nk-1,Order Completed,2026-03-02T10:15:00Z\n"

    def upload(kind: str) -> None:
        page.get_by_label("File", exact=True).set_input_files(
            files=[{"name": "orders.csv", "mimeType": "text/csv", "buffer": csv.encode()}])
        page.get_by_label("Source", exact=True).select_option(label="crm-kind (import)")
        page.get_by_label("Kind", exact=True).select_option(kind)
        page.get_by_role("button", name="Upload and import").click()

    imports = console.server.data_dir / "imports"
    before = set(imports.iterdir()) if imports.exists() else set()
    expect(page.get_by_label("Kind", exact=True)).to_have_value("")
    upload("")
    expect(page.get_by_role("alert")).to_contain_text("orders.csv has an 'event' column")
    expect(page.get_by_label("Kind", exact=True)).to_have_attribute("aria-invalid", "true")
    assert set(imports.iterdir()) == before
    upload("events")
    expect(page.locator("#import-state")).to_have_text("completed")
    with console.server.admin as admin:
        newest = admin.get("/api/imports").json()["imports"][0]
    assert (newest["file"], newest["kind"]) == ("orders.csv", "events")
    assert not console.problems()


def test_cancel_a_running_import_and_resume_it_to_every_row_once(console):
    """A large upload is cancelled while it runs (it stops at a checkpoint, its stored rows
    stay), then resumed from there: it completes with every row stored exactly once."""
    console.server.create_source("crm-big", kind="import")
    rows = 150_000
    # Track events, not identifies: the profile follower has nothing to catch up on after.
    csv = "user_id,event,timestamp,n\n" + "".join(
        f"big-{i % 100},Row Read,{1767225600 + i},{i}\n" for i in range(rows))
    page = console.nav("Imports")
    page.get_by_label("File", exact=True).set_input_files(
        files=[{"name": "big.csv", "mimeType": "text/csv", "buffer": csv.encode()}])
    page.get_by_label("Source", exact=True).select_option(label="crm-big (import)")
    page.get_by_label("Kind", exact=True).select_option("events")
    page.get_by_role("button", name="Upload and import").click()
    expect(page.locator("#import-state")).to_have_text("running")
    expect(page.get_by_role("button", name="Resume")).to_have_count(0)
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("status")).to_contain_text("Import cancelled after row")
    expect(page.locator("#import-state")).to_have_text("cancelled")
    job_id = page.url.split("/imports/")[1].split("?")[0]
    with console.server.admin as admin:
        part = admin.get(f"/api/imports/{job_id}").json()["summary"]
    assert 0 < part["events_accepted"] < rows
    assert page.locator("#import-rows").inner_text() == f"{part['rows_read']:,}"

    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_role("status")).to_contain_text("resumed from its checkpoint")
    expect(page.locator("#import-state")).to_have_text("completed", timeout=60_000)
    expect(page.locator("#import-rows")).to_have_text(f"{rows:,}")
    with console.server.admin as admin:
        done = admin.get(f"/api/imports/{job_id}").json()["summary"]
    assert done["resumed_after_row"] == part["last_row"]
    assert done["events_accepted"] == done["rows_read"] == rows and done["duplicates"] == 0
    assert not console.problems()


def test_open_a_person_and_read_their_activity_log(console):
    key = console.server.create_source("people-web")["write_key"]
    send_batch(console.server.url, key, [
        {"type": "track", "anonymousId": "anon-77", "event": "Viewed Pricing",
         "timestamp": "2026-01-01T10:00:00Z"},
        {"type": "identify", "userId": "person-77", "anonymousId": "anon-77",
         "traits": {"email": "ada77@example.com", "plan": "pro"},
         "timestamp": "2026-01-02T10:00:00Z"},
        {"type": "track", "userId": "person-77", "event": "Order Completed",
         "timestamp": "2026-01-03T10:00:00Z"},
        {"type": "track", "userId": "person-77", "event": "Signed Up",  # older, sent last
         "timestamp": "2025-12-31T10:00:00Z"},
    ])
    page = console.nav("People")
    page.get_by_label("Search people").fill("ADA77@example")  # a trait value, any case
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#people tbody tr")).to_have_count(1)
    console.screenshot("people-search")
    page.locator("#people").get_by_role("link", name="person-77").click()
    expect(page.get_by_role("heading", name="person-77")).to_be_visible()
    expect(page.get_by_role("row", name=re.compile("plan"))).to_contain_text('"pro"')
    expect(page.get_by_role("row", name=re.compile("plan"))).to_contain_text("2026-01-02")
    titles = page.locator("#activity li.event strong").all_inner_texts()
    assert titles == ["Order Completed", "", "Viewed Pricing", "Signed Up"]  # newest first
    console.nav("People")
    page.get_by_label("Search people").fill("person-77")  # an exact id opens the person
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("heading", name="person-77")).to_be_visible()
    console.screenshot("people")
    assert not console.problems()


def test_a_long_activity_log_pages_to_older_events(console):
    key = console.server.create_source("pager-web")["write_key"]
    send_batch(console.server.url, key, [
        {"type": "identify", "userId": "pager-1", "traits": {"name": "Pat Pager"},
         "timestamp": "2025-01-01T00:00:00Z"},
        *({"type": "track", "userId": "pager-1", "event": f"Step {i:02}",
           "timestamp": f"2025-02-01T00:{i:02}:00Z"} for i in range(57))])
    console.go("/people?q=pat pager")  # a word of a trait value: the list, then the person
    console.page.locator("#people").get_by_role("link", name="pager-1").click()
    page = console.page
    expect(page.get_by_text("58 events in all")).to_be_visible()
    titles = page.locator("#activity li.event strong").all_inner_texts()
    assert titles == [f"Step {i:02}" for i in range(56, 6, -1)]  # the newest 50
    page.get_by_role("link", name="Older events").click()
    expect(page.locator("#activity li.event")).to_have_count(8)
    titles = page.locator("#activity li.event strong").all_inner_texts()
    assert titles == [f"Step {i:02}" for i in range(6, -1, -1)] + [""]
    expect(page.get_by_role("link", name="Older events")).to_have_count(0)
    page.get_by_role("link", name="Newest events").click()
    expect(page.locator("#activity li.event")).to_have_count(50)


XSS = '<script>window.__xss = 1</script><img src="x" onerror="window.__xss = 2">'


def test_hostile_payloads_execute_nothing(console):
    """An event whose name, properties and traits carry script is shown as text
    everywhere, and nothing runs: not the payload, and (CSP) not anything inline."""
    key = console.server.create_source("xss-web")["write_key"]
    send_batch(console.server.url, key, [
        {"type": "identify", "userId": "xss-user", "traits": {"name": XSS, XSS: "x"}},
        {"type": "track", "userId": "xss-user", "event": XSS, "messageId": "xss-1",
         "properties": {"html": XSS, XSS: XSS}},
    ])
    with console.server.admin as admin:
        r = admin.post("/api/destinations", json={
            "name": "xss-hook", "type": "webhook",
            "settings": {"url": "http://127.0.0.1:9/hook"}})
        assert r.status_code == 201, r.text
        dest = r.json()["id"]
    page = console.page
    page.add_init_script("window.__xss = 0")

    def assert_inert() -> None:
        assert page.evaluate("window.__xss") == 0
        assert page.locator('img[src="x"]').count() == 0
        assert page.evaluate("[...document.scripts].some(s => s.text.includes('__xss'))") \
            is False

    console.go("/debugger")
    expect(page.locator("li.event", has_text=XSS).first).to_be_visible()
    send_batch(console.server.url, key, [{"type": "track", "userId": "xss-user",
                                           "event": XSS, "properties": {"live": XSS}}])
    expect(page.locator("li.event", has_text=XSS)).to_have_count(2)
    page.locator("li.event summary").first.click()
    assert_inert()
    console.go("/people?q=xss-user")
    expect(page.get_by_role("heading", name="xss-user")).to_be_visible()
    expect(page.locator(".trait-value", has_text="<script>")).to_have_count(1)
    expect(page.get_by_role("rowheader", name=XSS)).to_have_count(1)
    assert_inert()
    console.go(f"/destinations/{dest}/tester?message_id=xss-1")
    expect(page.locator("pre.payload")).to_contain_text("<script>")
    assert_inert()
    console.go(f"/replays/new?destination={dest}")
    page.get_by_label("From").fill("2000-01-01")
    page.get_by_label("To").fill("2100-01-01")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#preview")).to_contain_text("<script>")
    assert_inert()
    assert not console.problems()


def test_every_answer_carries_a_strict_csp(shared_server):
    with httpx.Client(base_url=shared_server.url) as client:
        for path in ("/console/sign-in", "/console/", "/console/static/console.css"):
            r = client.get(path)
            csp = r.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        r = client.post("/console/sources", data={"name": "x"},
                        headers={"Origin": "http://evil.example"})
        assert r.status_code == 403
        r = client.post("/console/sources", data={"name": "x"})
        assert r.status_code == 401  # no session
        page = client.get("/console/sign-in").text
        token = re.search(r'name="signin_token" value="([^"]+)"', page).group(1)
        r = client.post("/console/sign-in", data={"signin_token": token,
                                                  "token": ADMIN_TOKEN})
        assert r.status_code == 303
        r = client.post("/console/sources", data={"name": "no-csrf"})
        assert r.status_code == 403  # a session, but no CSRF token
        r = client.post("/console/sources", data={"name": "no-csrf", "csrf_token": "forged"})
        assert r.status_code == 403
    with shared_server.admin as admin:
        assert admin.get("/api/sources/no-csrf").status_code == 404
