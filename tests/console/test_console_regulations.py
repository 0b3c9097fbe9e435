"""The console's Regulations page in Chromium: a bad form is refused on the form, a
deletion is accepted with its CSRF token and its page shows the status per store and
per destination once it finished; no CSP violation or failed asset on the way."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import expect

from tests.support.delivery import send_batch
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow


def test_add_a_deletion_and_follow_its_status(console):
    tag = uuid.uuid4().hex[:8]
    person = f"cr-{tag}"
    key = console.server.create_source(f"reg-console-{tag}")["write_key"]
    send_batch(console.server.url, key, [
        {"type": "identify", "userId": person, "anonymousId": f"cr-anon-{tag}",
         "traits": {"plan": "pro"}},
        {"type": "track", "userId": person, "event": "Clicked"}])
    with console.server.admin as admin:
        wait_until(lambda: admin.get(f"/api/people/{person}").status_code == 200,
                   what="the profile")
    page = console.nav("Regulations")
    expect(page.get_by_role("heading", name="Regulations", exact=True)).to_be_visible()
    page.get_by_label("What to do").select_option("delete")
    page.get_by_role("button", name="Add regulation").click()  # no id: refused
    expect(page.get_by_role("alert")).to_contain_text("name at least one person")
    page.get_by_label("User ids").fill(person)
    page.get_by_label("Requested by").fill("dpo@example.com")
    page.get_by_role("button", name="Add regulation").click()
    expect(page.get_by_role("heading", name="Regulation reg_")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("accepted")
    reg_id = page.get_by_role("heading", level=1).inner_text().split()[-1]
    with console.server.admin as admin:
        wait_until(lambda: admin.get(f"/api/regulations/{reg_id}").json()["state"]
                   == "finished", what="the deletion finished")
    page.reload()
    expect(page.locator("#reg-state")).to_have_text("finished")
    events = page.locator("#stores tr", has_text="events")
    expect(events).to_contain_text("done")
    expect(events).to_contain_text("2")
    expect(page.locator("#stores tr", has_text="profiles")).to_contain_text("done")
    console.screenshot("regulation")
    page = console.nav("Regulations")
    expect(page.locator("#regulations")).to_contain_text(reg_id)
    expect(page.locator("#regulations")).to_contain_text("dpo@example.com")
    # a form posted without the session's CSRF token is refused and changes nothing
    forged = page.request.post(console.base + "/regulations",
                               form={"type": "delete", "user_ids": f"forged-{tag}"})
    assert forged.status == 403
    with console.server.admin as admin:
        assert f"forged-{tag}" not in admin.get("/api/regulations").text
    assert console.problems() == []
