"""Runs survive the process running them (#18): a replay or a redrive on a worker that is
SIGKILLed is resumed by the destination's next lease owner from the cursor and dead-letter
states saved in PostgreSQL, and finishes exactly once.

Real ``millpond serve`` processes on the session's dev cluster, Mixpanel fakes (a real
HTTP server that dedupes by ``$insert_id`` and counts the duplicates it dropped)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from tests.app.test_cluster_serve import _owner
from tests.console.conftest import sign_in
from tests.sdk.browser.harness import ClosedPort, launch_chromium
from tests.support.cluster import cluster_server
from tests.support.delivery import create_destination, send_batch, track
from tests.support.wait import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.serial]  # a 3 s lease decides the takeover


def insert_ids(fake) -> list[str]:
    return [r["properties"]["$insert_id"] for r in fake.received]


def _get(server, path: str) -> dict:
    with server.admin as admin:
        r = admin.get(path)
        r.raise_for_status()
        return r.json()


@contextmanager
def _two_servers(cluster, root, place) -> Iterator[tuple]:
    """Two ``millpond serve`` processes on the cluster, both stopped on the way out."""
    a = cluster_server(cluster, root, "a", place)
    b = cluster_server(cluster, root, "b", place)
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


def _owned_by(cluster, place, dest_id, a, b):
    """(owner, other) of destination ``dest_id`` among servers ``a`` and ``b``."""
    def owner() -> list[str] | None:  # leases are taken on the next tick
        try:
            return _owner(cluster, place, f"destination:{dest_id}").split(":")
        except AssertionError:
            return None

    found = wait_until(owner, timeout=30, what="the destination's lease taken")
    return (a, b) if str(a.proc.pid) in found else (b, a)


def test_a_replay_on_a_killed_worker_is_finished_by_the_next_owner_exactly_once(
        dev_cluster, tmp_path, place, vendor):
    always, late = vendor("mixpanel"), vendor("mixpanel")
    with _two_servers(dev_cluster, tmp_path, place) as (a, b):
        key = a.create_source("web")["write_key"]
        with a.admin as admin:
            create_destination(admin, name="always", type="mixpanel",
                               settings=always.destination_settings(),
                               rate_limit={"events_per_second": 20_000})
        history = [track(f"user{u}", n) for n in range(100) for u in range(12)]
        send_batch(a.url, key, history[:600])
        send_batch(b.url, key, history[600:])
        wait_until(lambda: len(always.received) >= len(history), timeout=60,
                   what="the always-connected destination to get the history")
        with b.admin as admin:  # connected now: its replay covers all of the history
            dest = create_destination(admin, name="late", type="mixpanel",
                                      settings=late.destination_settings(),
                                      rate_limit={"events_per_second": 150})
        owner, other = _owned_by(dev_cluster, place, dest["id"], a, b)
        with owner.admin as admin:
            r = admin.post("/api/replays", json={"destination": "late"})
            assert r.status_code == 201, r.text
            rid = r.json()["id"]
        wait_until(lambda: len(late.received) >= 200, timeout=60, what="the replay under way")
        owner.kill()
        killed_at = len(late.received)
        killed = time.monotonic()
        done = wait_until(lambda: (r := _get(other, f"/api/replays/{rid}"))["state"]
                          == "completed" and r, timeout=90, what="the replay finished")
        took = time.monotonic() - killed
        assert killed_at < len(history)  # it was killed mid-replay
        assert sorted(insert_ids(late)) == sorted(insert_ids(always))
        assert len(insert_ids(late)) == len(history)  # once each by $insert_id
        assert done["progress"]["scanned"] == len(history)
        # resent: at most what the killed process had sent after its last checkpoint
        assert late.duplicates <= 4 * 20, late.duplicates
        assert str(other.proc.pid) in _owner(dev_cluster, place, f"destination:{dest['id']}")
        print(f"\nreplay killed after {killed_at} of {len(history)}; finished by the other "
              f"process {took:.1f} s later; {late.duplicates} resent and dropped by $insert_id")


def _all_dead_lettered(cluster, place, fake, a, b, events: list[dict], rate: int):
    """Destination ``mp`` (Mixpanel, ``rate`` events/s) with ``events`` all dead-lettered
    while ``fake`` refused them, then ``fake`` taking events again; (owner, other)."""
    key = a.create_source("web")["write_key"]
    fake.outage(True, status=400)  # refused: every event is dead-lettered
    with a.admin as admin:
        dest = create_destination(admin, name="mp", type="mixpanel",
                                  settings=fake.destination_settings(),
                                  rate_limit={"events_per_second": rate})
    send_batch(a.url, key, events)
    owner, other = _owned_by(cluster, place, dest["id"], a, b)
    wait_until(lambda: _get(owner, "/api/destinations/mp/stats")["stats"]
               ["dead_letters_waiting"] == len(events), timeout=60,
               what="every event dead-lettered")
    fake.outage(False)
    return owner, other


def test_a_redrive_on_a_killed_worker_is_finished_by_the_next_owner_exactly_once(
        dev_cluster, tmp_path, place, vendor):
    fake = vendor("mixpanel")
    with _two_servers(dev_cluster, tmp_path, place) as (a, b):
        events = [track(f"user{u}", n) for n in range(60) for u in range(10)]
        owner, other = _all_dead_lettered(dev_cluster, place, fake, a, b, events, rate=120)
        with owner.admin as admin:
            r = admin.post("/api/destinations/mp/dead-letters/redrive", json={})
            assert r.status_code == 202, r.text
            assert r.json()["redriving"] == len(events)
        wait_until(lambda: len(fake.received) >= 100, timeout=60, what="the redrive under way")
        with owner.admin as admin:  # a new configuration restarts the destination's side:
            r = admin.patch("/api/destinations/mp", json={"rate_limit": {
                "events_per_second": 121}})
            assert r.status_code == 200, r.text
        stats = _get(owner, "/api/destinations/mp/stats")["stats"]
        # ... its redrive goes on (handed over to the new side), none put back to dead
        assert stats["redrives_running"] == 1 and stats["dead_letters_waiting"] == 0, stats
        wait_until(lambda: len(fake.received) >= 200, timeout=60, what="the redrive going on")
        owner.kill()
        killed_at = len(fake.received)

        def finished() -> dict | None:
            try:
                stats = _get(other, "/api/destinations/mp/stats")["stats"]
            except httpx.HTTPError:
                return None
            return stats if stats["state"] == "running" and len(fake.received) == len(
                events) and stats["redrives_running"] == 0 else None

        stats = wait_until(finished, timeout=90, what="the redrive finished elsewhere")
        assert killed_at < len(events)
        assert sorted(r["properties"]["$insert_id"] for r in fake.received) == sorted(
            e["messageId"] for e in events)
        dead = _get(other, "/api/destinations/mp/dead-letters?state=redriving")
        assert dead["dead_letters"] == []
        assert stats["dead_letters_waiting"] == 0
        assert fake.duplicates <= 4 * 20, fake.duplicates
        print(f"\nredrive killed after {killed_at} of {len(events)}; "
              f"{fake.duplicates} resent and dropped by $insert_id")


def test_a_redrive_asked_of_a_process_that_does_not_deliver_runs_on_the_one_that_does(
        dev_cluster, tmp_path, place, vendor):
    """Behind a load balancer, the console's Redrive reaches either process: the one
    without the destination's lease saves the redrive, and the owner runs it."""
    fake = vendor("mixpanel")
    with _two_servers(dev_cluster, tmp_path, place) as (a, b):
        events = [track(f"user{u}", n) for n in range(10) for u in range(5)]
        # slow enough that the owner finds the redrive running at several renewals
        owner, other = _all_dead_lettered(dev_cluster, place, fake, a, b, events, rate=10)
        dead = _get(other, "/api/destinations/mp/dead-letters")["dead_letters"]
        first = sorted(d["id"] for d in dead)[:20]
        with other.admin as admin:
            r = admin.post("/api/destinations/mp/dead-letters/redrive", json={"ids": first})
            assert r.status_code == 202, r.text
            assert (r.json()["redriving"], r.json()["refused"]) == (20, [])
            r = admin.post("/api/destinations/mp/dead-letters/redrive", json={})
            assert r.status_code == 202, r.text
            assert r.json()["redriving"] == len(events) - 20  # the rest: none twice

        def finished() -> dict | None:
            stats = _get(owner, "/api/destinations/mp/stats")["stats"]
            return stats if len(fake.received) == len(events) and \
                stats["redrives_running"] == 0 else None

        stats = wait_until(finished, timeout=60, what="the redrives run by the owner")
        assert sorted(r["properties"]["$insert_id"] for r in fake.received) == sorted(
            e["messageId"] for e in events)
        assert stats["dead_letters_waiting"] == 0 and fake.duplicates == 0
        assert _get(other, "/api/destinations/mp/dead-letters?state=dead")[
            "dead_letters"] == []


def test_replays_asked_of_a_process_that_does_not_deliver_take_effect_on_the_one_that_does(
        dev_cluster, tmp_path, place, vendor):
    """Preview, start, pause, resume and cancel through the process without the
    destination's lease: the owner starts and stops the replay within a third of the
    lease time (3 s here), and what the report counts is what the vendor got."""
    fake = vendor("mixpanel")
    with _two_servers(dev_cluster, tmp_path, place) as (a, b):
        key = a.create_source("web")["write_key"]
        history = [track(f"user{u}", n) for n in range(60) for u in range(5)]
        send_batch(a.url, key, history)
        with a.admin as admin:  # connected now: its replay covers the history
            dest = create_destination(admin, name="late", type="mixpanel",
                                      settings=fake.destination_settings(),
                                      rate_limit={"events_per_second": 40})
        _owner_of, other = _owned_by(dev_cluster, place, dest["id"], a, b)

        def ask(path: str, body: dict | None = None, status: int = 200) -> dict:
            with other.admin as admin:
                r = admin.post(path, json=body or {})
                assert r.status_code == status, r.text
                return r.json()

        def still(seconds: float = 2.0) -> int:
            """The events received once the owner stopped sending (it must within 1 s)."""
            time.sleep(1.5)
            before = len(fake.received)
            time.sleep(seconds)
            assert len(fake.received) == before, "the replay went on sending"
            return before

        preview = ask("/api/replays", {"destination": "late", "dry_run": True})
        assert preview["estimate"]["events"] == len(history) and not fake.received
        rid = ask("/api/replays", {"destination": "late"}, status=201)["id"]
        wait_until(lambda: len(fake.received) >= 40, timeout=30, what="the replay started")
        assert ask(f"/api/replays/{rid}/pause")["state"] == "paused"
        paused_at = still()
        assert paused_at < len(history)
        assert ask(f"/api/replays/{rid}/resume")["state"] == "running"
        wait_until(lambda: len(fake.received) >= paused_at + 20, timeout=30,
                   what="the replay resumed")
        cancel = ask(f"/api/replays/{rid}/cancel")
        assert cancel["state"] == "cancelled"
        cancelled_at = still()
        assert cancelled_at < len(history)
        # Made again once the owner stopped: the report counts what its last checkpoint
        # saved, which is what the vendor got but for the requests the stop cut short.
        final = wait_until(lambda: (r := _get(other, f"/api/replays/{rid}"))["report"][
            "sent"] == r["progress"]["sent"] and r, timeout=10, what="the report made again")
        assert cancel["report"]["sent"] <= final["report"]["sent"] <= cancelled_at
        assert final["report"]["outcome"] == "cancelled"
        # The pause cut requests short too: the resume sent them again (the fake drops
        # what it already has by $insert_id), at most what a second at 40/s holds.
        assert fake.duplicates <= 40, fake.duplicates
        assert set(insert_ids(fake)) <= {e["messageId"] for e in history}


def test_a_retry_now_asked_of_a_process_that_does_not_deliver_ends_the_owners_wait(
        dev_cluster, tmp_path, place, vendor):
    """Behind a load balancer, either process shows the destination waiting on the
    vendor's Retry-After (the state its owner published), and Retry now through the one
    without the lease reaches the owner within a renewal (1 s here), not 200 s later."""
    fake = vendor("mixpanel")
    with _two_servers(dev_cluster, tmp_path, place) as (a, b):
        key = a.create_source("web")["write_key"]
        with a.admin as admin:
            dest = create_destination(admin, name="mp", type="mixpanel",
                                      settings=fake.destination_settings())
        owner, other = _owned_by(dev_cluster, place, dest["id"], a, b)
        fake.fail_next(1, 429, retry_after=200)
        send_batch(b.url, key, [track("ada", 1)])

        def waiting() -> dict | None:
            stats = _get(other, "/api/destinations/mp/stats")["stats"]
            return stats if stats["state"] == "retrying" else None

        stats = wait_until(waiting, timeout=30, what="the other process to show the wait")
        assert str(owner.proc.pid) in stats["delivered_by"].split(":")
        assert stats["retry_now"] is True and stats["next_attempt_in"] > 150, stats
        assert fake.received == []
        with sync_playwright() as playwright:  # the console's button, on the other process
            closed = ClosedPort()
            browser = launch_chromium(playwright, closed.port)
            try:
                page = browser.new_page()
                page.set_default_timeout(15_000)
                sign_in(page, other)
                page.goto(f"{other.url}/console/destinations/{dest['id']}")
                expect(page.locator("h1 .badge")).to_have_text("retrying")
                expect(page.get_by_text(stats["delivered_by"])).to_be_visible()
                asked = time.monotonic()
                page.get_by_role("button", name="Retry now").click()
                expect(page.get_by_text(f"Asked {stats['delivered_by']}, which delivers"
                                        " destination mp, to retry now")).to_be_visible()
            finally:
                browser.close()
                closed.close()
        wait_until(lambda: len(fake.received) == 1, timeout=30, what="the event sent")
        took = time.monotonic() - asked
        assert took < 10, took
        running = wait_until(lambda: (s := _get(other, "/api/destinations/mp/stats")[
            "stats"])["state"] == "running" and s, timeout=30, what="the owner running")
        assert running["sent"] == 1 and running["last_error"] is not None  # the 429
        with other.admin as admin:  # not waiting any more: nothing is asked
            again = admin.post("/api/destinations/mp/retry-now").json()
        assert again["retried_now"] is False and "not waiting" in again["message"]
        print(f"\nretry-now through the other process: sent {took:.1f} s after asking")
