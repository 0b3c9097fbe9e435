"""Delivery end to end: ``millpond serve`` subprocess, vendor fakes on loopback, SDK-shaped
traffic. Slow-marked; they run in CI."""

from __future__ import annotations

import time

import pytest

from tests.support.delivery import (
    SteadySender,
    assert_complete_and_ordered,
    create_destination,
    send_batch,
    stats,
    track,
)
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

FAST_RETRIES = {"MILLPOND_DELIVERY_RETRY_CAP": "1", "MILLPOND_DELIVERY_RETRY_BASE": "0.2"}


def every_type(user: str) -> list[dict]:
    base = {"userId": user}
    return [
        {**base, "type": "identify", "messageId": "m-identify",
         "traits": {"email": "a@example.com", "name": "Ada"}},
        {**base, "type": "track", "messageId": "m-track", "event": "Order Completed",
         "properties": {"revenue": 12.5}},
        {**base, "type": "page", "messageId": "m-page", "name": "Pricing"},
        {**base, "type": "screen", "messageId": "m-screen", "name": "Home"},
        {**base, "type": "group", "messageId": "m-group", "groupId": "acme"},
        {**base, "type": "alias", "messageId": "m-alias", "previousId": "anon-1"},
    ]


def test_events_flow_to_webhook_and_mixpanel_by_their_presets(server, vendor):
    hook, mixpanel = vendor("webhook"), vendor("mixpanel")
    source = server.create_source("web")
    with server.admin as admin:
        create_destination(admin, name="hook", type="webhook",
                           settings=hook.destination_settings())
        create_destination(admin, name="mp", type="mixpanel",
                           settings=mixpanel.destination_settings())
        send_batch(server.url, source["write_key"], every_type("ada"))
        hook.wait_for(6)
        mixpanel.wait_for(3)
        wait_until(lambda: stats(admin, "mp")["cursor"] == 6, what="mp cursor")
        wait_until(lambda: stats(admin, "hook")["cursor"] == 6, what="hook cursor")
        wait_until(lambda: mixpanel.profiles.get("ada"), what="mixpanel profile")
        mp_stats = stats(admin, "mp")
        hook_stats = stats(admin, "hook")
    assert sorted(p["type"] for p in hook.received) == sorted(
        ["identify", "track", "page", "screen", "group", "alias"])
    assert {r["event"] for r in mixpanel.received} == {"Order Completed", "Loaded a Page",
                                                       "Loaded a Screen"}
    assert {r["properties"]["$insert_id"] for r in mixpanel.received} == {
        "m-track", "m-page", "m-screen"}
    assert mixpanel.profiles["ada"]["$email"] == "a@example.com"
    assert hook_stats["sent"] == 6 and hook_stats["lag_seconds"] == 0
    assert mp_stats["sent"] == 4
    assert mp_stats["skipped"] == {"no action handles group": 1, "no action handles alias": 1}
    assert mp_stats["actions"]["Track events"]["sent"] == 1
    assert mp_stats["events_behind"] == 0


def test_dead_letter_on_400_then_redrive_after_a_config_fix(server, vendor):
    mixpanel = vendor("mixpanel")
    source = server.create_source("web")
    bad_time = {"event": {"@path": "$.event"},
                "properties": {"distinct_id": {"@path": "$.userId"},
                               "$insert_id": {"@path": "$.messageId"},
                               "time": {"@path": "$.properties.scheduled_for"}}}
    action = {"name": "Track events", "trigger": 'type = "track"', "mapping": bad_time}
    with server.admin as admin:
        dest = create_destination(admin, name="mp", type="mixpanel",
                                  settings=mixpanel.destination_settings(), actions=[action])
        send_batch(server.url, source["write_key"], [
            track("u1", 1), track("u1", 2, properties={"scheduled_for": "2099-01-01T00:00:00Z"}),
            track("u2", 1, properties={"scheduled_for": "2099-06-01T00:00:00Z"})])
        mixpanel.wait_for(1)
        wait_until(lambda: stats(admin, "mp")["cursor"] == 3, what="cursor")
        dead = admin.get("/api/destinations/mp/dead-letters").json()["dead_letters"]
        assert [(d["status"], d["action"]) for d in dead] == [(400, "Track events")] * 2
        assert "properties.time" in dead[0]["reason"]
        one = admin.get(f"/api/dead-letters/{dead[0]['id']}").json()
        assert one["payload"]["properties"]["time"] == "2099-01-01T00:00:00Z"
        assert "out of range" in one["response"]
        # After a fix of the mapping, a redrive sends them.
        fixed = {**bad_time, "properties": {**bad_time["properties"],
                                            "time": {"@path": "$.timestamp"}}}
        r = admin.patch(f"/api/destinations/{dest['id']}",
                        json={"actions": [{**action, "mapping": fixed}]})
        assert r.status_code == 200, r.text
        r = admin.post("/api/destinations/mp/dead-letters/redrive", json={})
        assert r.status_code == 202 and r.json()["redriving"] == 2
        mixpanel.wait_for(3)
        wait_until(lambda: not admin.get("/api/destinations/mp/dead-letters?state=redriving")
                   .json()["dead_letters"], what="redrive to finish")
        assert admin.get("/api/destinations/mp/dead-letters").json()["dead_letters"] == []
        redriven = admin.get("/api/destinations/mp/dead-letters?state=redriven").json()
        assert len(redriven["dead_letters"]) == 2
        # each event counted once, in its final outcome: the two redriven ones as sent
        final = wait_until(lambda: (s := stats(admin, "mp"))["sent"] == 3 and s,
                           what="the redriven events counted as sent")
    assert final["dead_lettered"] == 0
    assert final["actions"]["Track events"]["dead_lettered_by"] == {}


@pytest.mark.parametrize("outage_seconds", [10, 120], ids=["outage-10s", "outage-120s"])
def test_outage_loses_nothing_keeps_order_and_spares_other_destinations(
        server_factory, vendor, outage_seconds):
    server = server_factory(**FAST_RETRIES)
    flaky, healthy = vendor("webhook", batch_size=10), vendor("webhook")
    source = server.create_source("web")
    with server.admin as admin:
        create_destination(admin, name="flaky", type="webhook",
                           settings=flaky.destination_settings(),
                           rate_limit={"events_per_second": 5000})
        create_destination(admin, name="healthy", type="webhook",
                           settings=healthy.destination_settings(),
                           rate_limit={"events_per_second": 5000})
        sender = SteadySender(server.url, source["write_key"], rate=40, users=8)
        sender.start()
        time.sleep(2)
        flaky.outage(True, 503)
        started = time.monotonic()
        healthy_lag: list[float] = []
        flaky_state = []
        while time.monotonic() - started < outage_seconds:
            healthy_lag.append(stats(admin, "healthy")["lag_seconds"])
            flaky_state.append(stats(admin, "flaky")["state"])
            time.sleep(0.5)
        outage_stats = stats(admin, "flaky")
        flaky.outage(False)
        time.sleep(2)
        sent = sender.stop()
        assert not sender.errors
        wait_until(lambda: len(flaky.received) >= len(sent), timeout=60,
                   what="the backlog to drain")
        wait_until(lambda: len(healthy.received) >= len(sent), timeout=30, what="healthy")
        # counters are saved with the cursor, just after the vendor's answer
        final = wait_until(lambda: (s := stats(admin, "flaky"))["events_behind"] == 0 and s,
                           what="flaky cursor at the tail")
    assert_complete_and_ordered(flaky.received, sent)
    assert_complete_and_ordered(healthy.received, sent)
    assert "retrying" in flaky_state
    assert outage_stats["events_behind"] > 0 and outage_stats["lag_seconds"] > 1
    assert "HTTP 503" in outage_stats["last_error"]
    assert max(healthy_lag) < 2.0, healthy_lag
    assert final["retried"] > 0 and final["dead_lettered"] == 0
    assert final["sent"] == len(sent) and final["lag_seconds"] == 0
    print(f"\noutage {outage_seconds}s: {len(sent)} events, flaky requests "
          f"{len(flaky.requests)}, healthy max lag {max(healthy_lag):.3f}s")


def test_sigkill_during_delivery_loses_nothing_and_duplicates_at_most_one_batch(
        server_factory, vendor):
    server = server_factory()
    hook, mixpanel = vendor("webhook"), vendor("mixpanel")
    source = server.create_source("web")
    messages = [track(f"user{i % 20}", i // 20) for i in range(3000)]
    with server.admin as admin:
        create_destination(admin, name="hook", type="webhook",
                           settings=hook.destination_settings(),
                           rate_limit={"events_per_second": 400})
        create_destination(admin, name="mp", type="mixpanel",
                           settings=mixpanel.destination_settings(),
                           rate_limit={"events_per_second": 400})
        send_batch(server.url, source["write_key"], messages)
        # kill mid-way: Mixpanel has taken its first 2000-event batch, the webhook (one
        # event per request at 400/s) is part-way through
        wait_until(lambda: len(mixpanel.received) >= 2000 and len(hook.received) > 500,
                   what="delivery under way")
    server.kill()
    delivered_before = len(hook.received), len(mixpanel.received)
    server.start()
    with server.admin as admin:
        wait_until(lambda: len(hook.received) >= 3000 and len(mixpanel.received) >= 3000,
                   timeout=60, what="delivery after restart")
        wait_until(lambda: stats(admin, "hook")["events_behind"] == 0, what="hook cursor")
        hook_stats = stats(admin, "hook")
    assert_complete_and_ordered(hook.received, messages)
    assert_complete_and_ordered(_as_mixpanel(mixpanel.received), messages)
    # webhook sends one event per request: at most the requests going at once (twice
    # max_in_flight, 16 for a webhook) are sent twice
    assert hook.duplicates <= 2 * 16, hook.duplicates
    assert mixpanel.duplicates <= 2000, mixpanel.duplicates
    assert hook_stats["sent"] >= 3000 - 1
    print(f"\nkilled after {delivered_before} deliveries; duplicates removed by the fakes: "
          f"webhook {hook.duplicates}, mixpanel {mixpanel.duplicates}")


def _as_mixpanel(records: list[dict]) -> list[dict]:
    """Mixpanel records in the shape ``assert_complete_and_ordered`` reads."""
    return [{"messageId": r["properties"]["$insert_id"], "userId": r["properties"]["distinct_id"],
             "properties": {"n": r["properties"]["n"]}} for r in records]


def test_a_timing_out_destination_does_not_slow_a_healthy_one(server_factory, vendor):
    server = server_factory(MILLPOND_DELIVERY_TIMEOUT="1", **FAST_RETRIES)
    stuck, healthy = vendor("webhook"), vendor("webhook")
    stuck.delay_seconds = 3.0  # longer than the client timeout: every request times out
    source = server.create_source("web")
    with server.admin as admin:
        create_destination(admin, name="stuck", type="webhook",
                           settings=stuck.destination_settings())
        create_destination(admin, name="healthy", type="webhook",
                           settings=healthy.destination_settings())
        sender = SteadySender(server.url, source["write_key"], rate=40, users=5)
        sender.start()
        lags = []
        started = time.monotonic()
        while time.monotonic() - started < 12:
            lags.append(stats(admin, "healthy")["lag_seconds"])
            time.sleep(0.3)
        sent = sender.stop()
        wait_until(lambda: len(healthy.received) >= len(sent), what="healthy delivery")
        stuck_stats = stats(admin, "stuck")
    assert_complete_and_ordered(healthy.received, sent)
    assert max(lags) < 2.0, lags
    assert stuck_stats["state"] == "retrying" and "Timeout" in stuck_stats["last_error"]
    assert stuck_stats["lag_seconds"] > 5 and stuck_stats["events_behind"] > 100
    print(f"\nhealthy destination max lag {max(lags):.3f}s while the other timed out")
