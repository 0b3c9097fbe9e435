"""Browser journeys through the console, part two: destinations from the catalog, the
event tester, replays (preview, start, progress to completion, pause and resume, each
event received exactly once) and redriving dead letters after a fix."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from playwright.sync_api import expect

from tests.support.cli import ok
from tests.support.delivery import send_batch
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow


def _events(source_key: str, url: str, n: int, tag: str) -> list[dict]:
    messages = [{"type": "track", "userId": f"{tag}-{i % 3}", "event": "Order Completed",
                 "messageId": f"{tag}-{i}", "properties": {"n": i, "revenue": 9.5},
                 "timestamp": f"2026-01-01T00:00:{i:02d}Z"} for i in range(n)]
    send_batch(url, source_key, messages)
    return messages


def _add_webhook(page, name: str, url: str) -> str:
    """Through the catalog's form; returns the destination id from the page's URL."""
    page.get_by_role("link", name="Add Webhook").click()
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label(re.compile(r"^url")).fill(url)
    page.get_by_role("button", name="Add destination").click()
    expect(page.get_by_role("heading", name=re.compile(name))).to_be_visible()
    return page.url.rsplit("/", 1)[1].split("?")[0]


def _wait_state(page, state: str, timeout: float = 30_000) -> None:
    expect(page.locator("#replay-state")).to_have_text(state, timeout=timeout)


def test_connect_late_preview_replay_pause_resume_exactly_once(console, vendor):
    server = console.server
    key = server.create_source("replay-web")["write_key"]
    sent = _events(key, server.url, 30, f"rp-{uuid.uuid4().hex[:6]}")
    fake = vendor("webhook")
    page = console.nav("Destinations")
    console.screenshot("destinations")
    # A settings error is shown beside its field, then corrected.
    page.get_by_role("link", name="Add Webhook").click()
    page.get_by_label("Name", exact=True).fill("replay-hook")
    page.get_by_label(re.compile(r"^url")).fill("not a url")
    page.get_by_role("button", name="Add destination").click()
    url_field = page.get_by_label(re.compile(r"^url"))
    expect(url_field).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#setting-url-err")).to_contain_text("http or https URL")
    url_field.fill(fake.destination_settings()["url"])
    page.get_by_role("button", name="Add destination").click()
    expect(page.get_by_role("heading", name=re.compile("replay-hook"))).to_be_visible()
    dest_url = page.url.split("?")[0]

    page.get_by_role("button", name="Replay past data").click()
    page.get_by_label("From").fill("2025-12-31")
    page.get_by_label("To").fill("2026-01-02")
    page.get_by_label("Sources").select_option(label="replay-web (pipelines)")
    page.get_by_label("Filter").fill('type = "track"')
    page.get_by_label("Rate").fill("1000")
    page.get_by_role("button", name="Preview").click()  # refused: the reason, on the form
    expect(page.get_by_role("alert")).to_contain_text("above the destination's rate limit")
    page.get_by_label("Rate").fill("100")
    page.get_by_role("button", name="Preview").click()
    preview = page.locator("#preview")
    expect(preview).to_contain_text("30 events in the window")
    expect(preview).to_contain_text("Send event: 30")
    console.screenshot("replay-preview", full_page=True)
    page.get_by_role("button", name="Start replay").click()
    _wait_state(page, "completed")
    bar = page.locator("#replay-bar")
    expect(bar).to_have_attribute("value", "30")
    expect(bar).to_have_attribute("max", "30")
    expect(page.locator("#replay-report")).to_contain_text("30 sent")
    console.screenshot("replay")
    received = fake.wait_for(30)
    assert sorted(p["messageId"] for p in received) == sorted(m["messageId"] for m in sent)
    assert fake.duplicates == 0

    # A second, slow replay to another late destination: pause it, resume it.
    slow = vendor("webhook")
    console.go("/destinations")
    _add_webhook(page, "slow-hook", slow.destination_settings()["url"])
    page.get_by_role("button", name="Replay past data").click()
    page.get_by_label("From").fill("2025-12-31")
    page.get_by_label("Rate").fill("4")
    page.get_by_role("button", name="Preview").click()
    page.get_by_role("button", name="Start replay").click()
    _wait_state(page, "running")
    page.get_by_role("button", name="Pause").click()
    _wait_state(page, "paused")
    paused_at = len(slow.received)
    page.wait_for_timeout(1000)
    assert len(slow.received) == paused_at < 30
    page.get_by_role("button", name="Resume").click()
    _wait_state(page, "completed", timeout=30_000)
    assert sorted(p["messageId"] for p in slow.received) == \
        sorted(m["messageId"] for m in sent)
    assert slow.duplicates == 0
    console.go("/replays")
    expect(page.get_by_role("row", name=re.compile("slow-hook"))).to_contain_text("completed")
    console.screenshot("replays")
    page.goto(dest_url)
    funnel = page.get_by_role("table").filter(has_text="Matched").nth(1)
    expect(funnel.get_by_role("row", name=re.compile("Send event"))).to_contain_text("30")
    # the replay's sent count opens exactly the events it sent
    funnel.get_by_role("link", name="Send event: sent, 30").click()
    expect(page.locator("#outcome-events > li")).to_have_count(30)
    listed = page.locator("#outcome-events").inner_text()
    assert all(f"messageId {m['messageId']}" in listed for m in sent)
    assert not console.problems()


def test_event_tester_explains_each_action(console, vendor):
    server = console.server
    key = server.create_source("tester-web")["write_key"]
    _events(key, server.url, 1, f"tt-{uuid.uuid4().hex[:6]}")
    message_id = server.events(source="tester-web")[0]["messageId"]
    fake = vendor("webhook")
    page = console.nav("Destinations")
    _add_webhook(page, "tester-hook", fake.destination_settings()["url"])
    page.get_by_role("link", name="Edit actions").click()
    page.get_by_label("Name").last.fill("Big orders")
    page.get_by_label("Trigger").last.fill('type = "track" and properties.revenue > 100')
    page.get_by_label("Mapping").last.fill('{"order": {"@path": "$.properties"}}')
    page.get_by_role("button", name="Save actions").click()
    expect(page.get_by_text("Actions saved.")).to_be_visible()
    page.get_by_role("link", name="Event tester").click()
    page.get_by_label("messageId").fill(message_id)
    page.get_by_role("button", name="Test event").click()
    send = page.locator(".action-result", has_text="Send event")
    expect(send).to_contain_text("send")
    expect(send.locator("pre.payload")).to_contain_text(message_id)
    expect(send.locator("pre.request")).to_contain_text("POST " + fake.url)
    big = page.locator(".action-result", has_text="Big orders")
    expect(big).to_contain_text("did not match")
    expect(big.locator("li.failed")).to_have_text(re.compile(r"properties\.revenue > 100"))
    expect(big.locator("li.passed")).to_have_text(re.compile(r'type = "track"'))
    console.screenshot("tester", full_page=True)
    page.get_by_role("button", name="Send it for real").click()
    expect(page.get_by_role("heading", name="The vendor's answers")).to_be_visible()
    expect(page.get_by_text("HTTP 200")).to_be_visible()
    assert [p["messageId"] for p in fake.wait_for(1)] == [message_id]
    assert not console.problems()


def test_redrive_a_dead_letter_after_fixing_the_destination(console, vendor):
    server = console.server
    key = server.create_source("redrive-web")["write_key"]
    fake = vendor("webhook")
    page = console.nav("Destinations")
    wrong = fake.url + "/wrong/path"  # the fake answers 404: a permanent refusal
    dest = _add_webhook(page, "redrive-hook", wrong)
    sent = _events(key, server.url, 2, f"rd-{uuid.uuid4().hex[:6]}")
    with server.admin as admin:
        wait_until(lambda: admin.get(f"/api/destinations/{dest}/stats").json()["stats"]
                   ["dead_letters_waiting"] == 2, what="two dead letters")
    page.reload()
    dead = page.locator("#dead-letters")
    expect(dead).to_contain_text("2 waiting")
    expect(dead).to_contain_text("HTTP 404")
    expect(dead).to_contain_text("no such hook")
    console.screenshot("destination", full_page=True)
    page.get_by_role("link", name="Edit settings").click()
    page.get_by_label(re.compile(r"^url")).fill(fake.destination_settings()["url"])
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Settings saved.")).to_be_visible()
    page.get_by_role("button", name="Redrive").click()
    expect(page.get_by_role("status")).to_contain_text("Redriving 2 dead letters")
    received = fake.wait_for(2)
    assert sorted(p["messageId"] for p in received) == sorted(m["messageId"] for m in sent)
    page.reload()
    expect(page.locator("#dead-letters")).to_contain_text("0 waiting")
    console.nav("Overview")
    console.screenshot("overview")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    console.screenshot("overview-phone", full_page=True)
    assert not console.problems()


def test_retry_now_ends_a_long_retry_after(console, vendor):
    """#13 item 11 in the console: a vendor that said ``Retry-After: 3600`` and is back
    sooner gets the held event at once from the destination page's "Retry now"."""
    server = console.server
    key = server.create_source("retry-web")["write_key"]
    fake = vendor("webhook")
    page = console.nav("Destinations")
    dest = _add_webhook(page, "retry-hook", fake.destination_settings()["url"])
    expect(page.get_by_role("button", name="Retry now")).to_have_count(0)  # nothing waits
    fake.fail_next(1, 429, retry_after=3600)
    sent = _events(key, server.url, 1, f"rn-{uuid.uuid4().hex[:6]}")
    with server.admin as admin:
        wait_until(lambda: admin.get(f"/api/destinations/{dest}/stats").json()["stats"]
                   ["retry_now"], what="the destination to wait for its next attempt")
    page.reload()
    page.get_by_role("button", name="Retry now").click()
    expect(page.get_by_role("status")).to_contain_text("Retrying now")
    received = fake.wait_for(1, timeout=10)
    assert [p["messageId"] for p in received] == [sent[0]["messageId"]]
    assert not console.problems()


def test_every_funnel_count_opens_exactly_the_events_behind_it(console, vendor):
    """A destination with an event skipped (older than its action's window), one
    dead-lettered (the vendor refuses) and one no action handles: each count of the funnel
    is a link, and each opens exactly its events, which open the tester."""
    server = console.server
    tag = uuid.uuid4().hex[:6]
    key = server.create_source(f"funnel-{tag}")["write_key"]
    fake = vendor("webhook")
    action = "Send tracks"
    with server.admin as admin:
        r = admin.post("/api/destinations", json={
            "name": f"funnel-hook-{tag}", "type": "webhook",
            "settings": {"url": fake.url + "/refused"},  # the fake answers 404
            "actions": [{"name": action, "trigger": 'type = "track"',
                         "mapping": {"@path": "$."}, "max_event_age": "24h"}]})
        assert r.status_code == 201, r.text
        dest = r.json()["id"]
        send_batch(server.url, key, [
            {"type": "track", "userId": "f1", "event": "Old", "messageId": f"old-{tag}",
             "timestamp": "2020-01-01T00:00:00Z"},
            {"type": "track", "userId": "f1", "event": "New", "messageId": f"new-{tag}"},
            {"type": "identify", "userId": "f1", "messageId": f"who-{tag}"}])
        wait_until(lambda: admin.get(f"/api/destinations/{dest}/stats").json()["stats"]
                   ["dead_letters_waiting"] == 1, what="one dead letter")
    page = console.go(f"/destinations/{dest}")

    def opens(link: str, *message_ids: str) -> None:
        page.get_by_role("link", name=link, exact=True).click()
        listed = page.locator("#outcome-events > li")
        expect(listed).to_have_count(len(message_ids))
        for message_id in message_ids:
            expect(page.locator("#outcome-events")).to_contain_text(f"messageId {message_id}")
        page.go_back()

    opens(f"{action}: skipped (older than trigger window), 1", f"old-{tag}")
    opens(f"{action}: dead-lettered (HTTP 404), 1", f"new-{tag}")
    opens(f"{action}: matched, 2", f"old-{tag}", f"new-{tag}")
    opens(f"{action}: mapped, 1", f"new-{tag}")
    page.get_by_role("link", name=re.compile(r"^no action: skipped \(no action")).click()
    expect(page.locator("#outcome-events > li")).to_have_count(1)
    expect(page.locator("#outcome-events")).to_contain_text(f"messageId who-{tag}")
    console.screenshot("funnel-events")
    page.go_back()
    page.get_by_role("link", name=f"{action}: dead-lettered (HTTP 404), 1").click()
    page.get_by_role("link", name="test it").click()
    expect(page.get_by_role("heading", name=re.compile("tester", re.I))).to_be_visible()
    expect(page.locator("body")).to_contain_text(f"new-{tag}")
    assert not console.problems()


def test_retrying_now_lists_the_events_held_for_a_next_attempt(console, vendor):
    """The funnel's "Retrying now" is the events the pump holds after the vendor failed:
    a count that links to them (each with its attempts and the vendor's answer), the same
    list in the API and the CLI, emptied live when the vendor recovers; then the events
    are counted as sent, each received once."""
    server = console.server
    tag = uuid.uuid4().hex[:6]
    key = server.create_source(f"retrying-{tag}")["write_key"]
    fake = vendor("webhook")
    action = "Send tracks"
    with server.admin as admin:
        dest = admin.post("/api/destinations", json={
            "name": f"retrying-hook-{tag}", "type": "webhook",
            "settings": fake.destination_settings(),
            "actions": [{"name": action, "trigger": 'type = "track"',
                         "mapping": {"@path": "$."}}]}).json()["id"]
        fake.outage(True, 500)
        sent = _events(key, server.url, 3, f"rt-{tag}")

        def retrying() -> dict:
            r = admin.get(f"/api/destinations/{dest}/retrying")
            assert r.status_code == 200, r.text
            return r.json()

        # every failed attempt is counted (and saved) as it happens: at least once each
        wait_until(lambda: (r := retrying())["total"] == 3 and r["retry_attempts"] >= 3,
                   what="three events retrying")
        held = retrying()
        assert sorted(e["message_id"] for e in held["events"]) == sorted(
            m["messageId"] for m in sent)
        assert {(e["action"], e["run"], e["status"]) for e in held["events"]} == {
            (action, "live", 500)}
        assert all(e["attempts"] >= 1 and e["reason"].startswith("HTTP 500")
                   and e["event"]["messageId"] == e["message_id"] for e in held["events"])
        missing = admin.get(f"/api/destinations/{dest}/retrying", params={"run": "rpl_nope"})
        assert missing.status_code == 404 and missing.json()["error"]["field"] == "run"
    cli = ok(server, "destinations", "retrying", dest, "--json")
    assert json.loads(cli)["total"] == 3

    page = console.go(f"/destinations/{dest}")
    page.get_by_role("link", name=f"{action}: retrying now, 3", exact=True).click()
    rows = page.locator("#retrying-events tbody tr")
    expect(rows).to_have_count(3)
    for message in sent:
        expect(page.locator("#retrying-events")).to_contain_text(message["messageId"])
    expect(rows.first).to_contain_text("HTTP 500")
    console.screenshot("retrying")
    fake.outage(False)  # the vendor is back; end the backoff's wait rather than sit it out
    with server.admin as admin:
        assert admin.post(f"/api/destinations/{dest}/retry-now").status_code == 200
    expect(page.locator("#retrying-none")).to_be_visible()  # the list refreshed itself
    received = fake.wait_for(3, timeout=10)
    assert sorted(p["messageId"] for p in received) == sorted(m["messageId"] for m in sent)
    page.goto(f"{console.base}/destinations/{dest}")
    page.get_by_role("link", name=f"{action}: sent, 3", exact=True).click()
    expect(page.locator("#outcome-events > li")).to_have_count(3)
    assert not console.problems()
