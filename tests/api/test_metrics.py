"""``/metrics`` scraped from a live server: replays, imports, dead letters, destination
states, and ``--metrics-auth``."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.delivery import create_destination, send_batch, track, upload
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

FAST_RETRIES = {"MILLPOND_DELIVERY_RETRY_BASE": "0.05", "MILLPOND_DELIVERY_RETRY_CAP": "0.2"}
CSV = "id,email\nu1,a@x.io\nu2,b@x.io\n,nobody@x.io\n"


def scrape(client: httpx.Client) -> dict[tuple[str, tuple], float]:
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    out = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return out


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def test_metrics_need_the_admin_token_with_metrics_auth(server_factory):
    srv = server_factory(args=["--metrics-auth"])
    r = httpx.get(f"{srv.url}/metrics")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", r.text
    wrong = httpx.get(f"{srv.url}/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    with srv.admin as admin:
        assert admin.get("/metrics").status_code == 200
    open_by_default = server_factory(name="open")
    assert httpx.get(f"{open_by_default.url}/metrics").status_code == 200


def test_replays_imports_dead_letters_and_states_are_scraped(server, vendor):
    server.stop()
    server.extra_env.update(FAST_RETRIES)
    server.start()
    hook, late, slow = vendor("webhook"), vendor("webhook"), vendor("webhook")
    web = server.create_source("web")
    with server.admin as admin:
        create_destination(admin, name="hook", type="webhook",
                           settings=hook.destination_settings())
        hook.fail_next(2, 400, body="bad payload")
        send_batch(server.url, web["write_key"], [track("u1", i) for i in range(6)])
        hook.wait_for(4)
        wait_until(lambda: admin.get("/api/destinations/hook/stats").json()["stats"]
                   ["dead_lettered"] == 2, what="two dead letters")
        create_destination(admin, name="late", type="webhook",
                           settings=late.destination_settings())
        create_destination(admin, name="slow", type="webhook",
                           settings=slow.destination_settings(),
                           rate_limit={"events_per_second": 1})
        done = admin.post("/api/replays", json={"destination": "late"}).json()
        wait_until(lambda: admin.get(f"/api/replays/{done['id']}").json()["state"]
                   == "completed", what="the replay to complete")
        running = admin.post("/api/replays", json={"destination": "slow"})
        assert running.status_code == 201, running.text
        server.create_source("crm", kind="import")
        assert upload(server, CSV, source="crm").json()["state"] == "completed"
        assert upload(server, CSV, source="crm").json()["state"] == "completed"

        m = scrape(admin)
        assert value(m, "millpond_dead_letters", destination="hook", state="dead") == 2
        assert value(m, "millpond_dead_letters", destination="late", state="dead") == 0
        assert value(m, "millpond_destination_state", destination="hook",
                     state="running") == 1
        assert value(m, "millpond_replay_events_total", destination="late",
                     outcome="sent") == 6
        assert value(m, "millpond_replay_scanned_events_total", destination="late") == 6
        assert value(m, "millpond_replays_active", state="running") == 1
        assert value(m, "millpond_replays_active", state="paused") == 0
        rate = value(m, "millpond_replay_rate_events_per_second", destination="slow",
                     replay=running.json()["id"])
        assert rate is not None and 0 <= rate <= 1.5
        assert value(m, "millpond_import_rows_total", source="crm", outcome="accepted") == 2
        assert value(m, "millpond_import_rows_total", source="crm", outcome="duplicate") == 2
        assert value(m, "millpond_import_rows_total", source="crm", outcome="rejected") == 2
        assert value(m, "millpond_imports_active") == 0
        assert value(m, "millpond_storage_unavailable") == 0

        admin.post(f"/api/replays/{running.json()['id']}/pause")
        hook.outage(True)
        send_batch(server.url, web["write_key"], [track("u2", 0)])
        wait_until(lambda: value(scrape(admin), "millpond_destination_state",
                                 destination="hook", state="retrying"),
                   what="hook retrying in /metrics")
        admin.patch("/api/destinations/late", json={"enabled": False})
        m = scrape(admin)
        assert value(m, "millpond_destination_state", destination="late",
                     state="disabled") == 1
        assert value(m, "millpond_replays_active", state="paused") == 1
        assert value(m, "millpond_replays_active", state="running") == 0
        hook.outage(False)


def counters(client: httpx.Client) -> dict[tuple[str, tuple], float]:
    """Every sample of every counter family in ``/metrics``."""
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) if family.type == "counter"
            for s in family.samples}


def test_counters_never_decrease_across_a_redrive(server, vendor):
    """Prometheus counters are flows: a redrive moves events out of the dead letters
    (stats count each event once, in its final outcome) without any counter going
    down; what still waits is the ``millpond_dead_letters`` gauge."""
    hook = vendor("webhook")
    web = server.create_source("web")
    with server.admin as admin:
        create_destination(admin, name="hook", type="webhook",
                           settings=hook.destination_settings())
        hook.fail_next(2, 400, body="bad payload")
        send_batch(server.url, web["write_key"], [track("u1", i) for i in range(4)])
        hook.wait_for(2)
        wait_until(lambda: admin.get("/api/destinations/hook/stats").json()["stats"]
                   ["dead_lettered"] == 2, what="two dead letters")
        before = counters(admin)
        dead = ("millpond_delivery_events_total",
                (("action", "Send event"), ("destination", "hook"),
                 ("outcome", "dead_lettered"), ("reason", "HTTP 400")))
        assert before[dead] == 2
        assert admin.post("/api/destinations/hook/dead-letters/redrive",
                          json={}).status_code == 202
        wait_until(lambda: admin.get("/api/destinations/hook/stats").json()["stats"]
                   ["dead_letters_waiting"] == 0, what="the redrive")
        hook.wait_for(4)
        # The vendor has the events before the ledger commits their outcome: wait for
        # the stats to settle rather than read them once (a CI run read 3 sent, 1 dead).
        def sent_and_dead() -> tuple[int, int]:
            stats = admin.get("/api/destinations/hook/stats").json()["stats"]
            return stats["sent"], stats["dead_lettered"]
        wait_until(lambda: sent_and_dead() == (4, 0), what="stats: 4 sent, 0 dead-lettered")
        after = counters(admin)
        gauges = scrape(admin)
    lowered = {k: (v, after.get(k)) for k, v in before.items() if after.get(k, -1) < v}
    assert not lowered, f"counters went down: {lowered}"
    assert after[dead] == 2
    assert value(after, "millpond_delivery_redriven_total", destination="hook",
                 action="Send event", reason="HTTP 400") == 2
    assert value(after, "millpond_delivery_events_total", destination="hook",
                 action="Send event", outcome="sent", reason="") == 4
    assert value(gauges, "millpond_dead_letters", destination="hook", state="dead") == 0
