"""What a running server says about its work, end to end: a destination retrying then
recovering, dead letters, a replay, an import; each state change once, with its figures
as JSON fields. Real ``millpond serve`` subprocesses and vendor fakes on loopback;
slow-marked."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.support.delivery import create_destination, send_batch, track

from .helpers import phase

pytestmark = pytest.mark.slow

FAST_RETRIES = {"MILLPOND_DELIVERY_RETRY_BASE": "0.05", "MILLPOND_DELIVERY_RETRY_CAP": "0.2"}


def write_key(srv, name: str = "web", **extra) -> str:
    with srv.admin as admin:
        r = admin.post("/api/sources", json={"name": name, **extra})
        assert r.status_code == 201, r.text
        return r.json()["write_key"]


def test_a_destination_retrying_then_recovering_logs_each_change_once(served, vendor):
    srv = served("--log-format", "json", **FAST_RETRIES)
    srv.wait_serving()
    hook = vendor("webhook", batch_size=50)
    hook.fail_next(3, 503, body="vendor down for maintenance")
    key = write_key(srv)
    with srv.admin as admin:
        create_destination(admin, name="hook", type="webhook",
                           settings=hook.destination_settings())
    send_batch(srv.url, key, [track("ada", i) for i in range(20)])
    hook.wait_for(20)
    srv.wait_record(phase("recovered", destination="hook"), what="recovered record")
    send_batch(srv.url, key, [track("bob", i) for i in range(5)])  # healthy: nothing to say
    hook.wait_for(25)
    time.sleep(0.5)
    about_hook = [r for r in srv.records() if r.get("destination") == "hook"
                  and r["logger"] == "millpond.delivery"]
    assert [r["phase"] for r in about_hook] == ["retrying", "recovered"]
    retrying, recovered = about_hook
    assert retrying["level"] == "WARNING" and retrying["logger"] == "millpond.delivery"
    assert retrying["status"] == 503
    assert "HTTP 503: vendor down for maintenance" in retrying["error"]
    assert "vendor down for maintenance" in retrying["message"]
    assert recovered["level"] == "INFO" and recovered["failed_attempts"] == 3
    assert 0 < recovered["failing_seconds"] < 10


def test_dead_letters_are_logged_per_batch_with_count_and_reason(served, vendor):
    srv = served("--log-format", "json")
    srv.wait_serving()
    hook = vendor("webhook", batch_size=50)
    hook.fail_next(1, 400, body="bad payload: no such field")
    key = write_key(srv)
    with srv.admin as admin:
        # a request carries at most 1/50 s of budget: at 5,000/s the 10 events share one
        create_destination(admin, name="hook", type="webhook",
                           settings=hook.destination_settings(),
                           rate_limit={"events_per_second": 5000})
    send_batch(srv.url, key, [track("ada", i) for i in range(10)])
    first = srv.wait_record(phase("dead_lettered", destination="hook"), what="dead letters")
    time.sleep(1.5)
    dead = [r for r in srv.records() if r.get("phase") == "dead_lettered"]
    assert sum(r["dead_lettered"] for r in dead) == 10 and len(dead) <= 2
    assert first["level"] == "WARNING" and first["activity"] == "live"
    assert any("HTTP 400: bad payload: no such field" in reason for reason in first["reasons"])
    assert "dead-lettered" in first["message"] and "bad payload" in first["message"]


def test_a_replay_logs_its_start_and_its_report(served, vendor):
    srv = served("--log-format", "json")
    srv.wait_serving()
    key = write_key(srv)
    send_batch(srv.url, key, [track(f"user{i % 3}", i) for i in range(30)])
    late = vendor("webhook", batch_size=10)
    with srv.admin as admin:
        dest = create_destination(admin, name="late", type="webhook",
                                  settings=late.destination_settings())
        r = admin.post("/api/replays", json={"destination": "late"})
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
    done = srv.wait_record(phase("completed", replay_id=rid), what="replay report")
    started = srv.wait_record(phase("started", replay_id=rid))
    assert started["logger"] == "millpond.replays" and started["destination"] == "late"
    # the default window ends at the connection point, and says so (#13 item 6)
    assert started["estimate_events"] == 30 and started["window_to"] == dest["connected_at"]
    assert "about 30 events" in started["message"]
    assert done["destination"] == "late"
    assert (done["scanned"], done["sent"], done["skipped"], done["dead_lettered"]) == (30, 30,
                                                                                       0, 0)
    assert done["elapsed_seconds"] > 0 and done["average_rate"] > 0
    assert f"Replay {rid} completed: 30 events scanned" in done["message"]
    assert "events/s" in done["message"]
    assert len(late.received) == 30


def test_an_import_logs_its_start_and_its_figures(served):
    srv = served("--log-format", "json")
    srv.wait_serving()
    write_key(srv, "crm", kind="import")
    csv = "id,email\nu1,a@x.io\nu2,b@x.io\n,nobody@x.io\n"
    with srv.admin as admin:
        r = admin.post("/api/imports", params={"source": "crm", "file_name": "people.csv",
                                               "wait": "true"},
                       content=csv.encode(), headers={"Content-Type": "text/csv"})
    assert r.status_code == 202 and r.json()["state"] == "completed", r.text
    job = r.json()["id"]
    started = srv.wait_record(phase("started", import_id=job), what="import start")
    done = srv.wait_record(phase("completed", import_id=job), what="import end")
    assert started["logger"] == "millpond.imports"
    assert (started["source"], started["file"], started["kind"]) == ("crm", "people.csv",
                                                                     "people")
    assert started["file_bytes"] == len(csv)
    assert (done["rows_read"], done["events_accepted"], done["rows_rejected"]) == (3, 2, 1)
    assert done["rows_per_second"] > 0 and done["level"] == "INFO"
    assert "3 rows read, 2 events stored" in done["message"]


def test_log_level_warning_keeps_warnings_and_hides_info(served, vendor):
    srv = served("--log-format", "json", "--log-level", "warning", **FAST_RETRIES)
    srv.wait_serving()
    hook = vendor("webhook")
    hook.fail_next(1, 503)
    key = write_key(srv)
    with srv.admin as admin:
        create_destination(admin, name="hook", type="webhook",
                           settings=hook.destination_settings())
    send_batch(srv.url, key, [track("ada", 1)])
    hook.wait_for(1)
    srv.wait_record(phase("retrying", destination="hook"), what="retrying warning")
    r = httpx.get(f"{srv.url}/healthz", timeout=5)
    assert r.status_code == 200
    srv.stop()
    assert {r["level"] for r in srv.records()} == {"WARNING"}
    assert not [r for r in srv.records() if r.get("phase") in ("recovered", "starting")]


def test_a_replay_paused_resumed_and_cancelled_logs_each_step(served, vendor):
    srv = served("--log-format", "json")
    srv.wait_serving()
    key = write_key(srv)
    send_batch(srv.url, key, [track(f"user{i % 3}", i) for i in range(40)])
    late = vendor("webhook")
    with srv.admin as admin:
        create_destination(admin, name="late", type="webhook",
                           settings=late.destination_settings())
        rid = admin.post("/api/replays", json={"destination": "late", "rate": 4}).json()["id"]
        for step in ("pause", "resume", "cancel"):
            r = admin.post(f"/api/replays/{rid}/{step}")
            assert r.status_code == 200, r.text
        report = r.json()["report"]
    srv.wait_record(phase("cancelled", replay_id=rid), what="cancel record")
    steps = [r for r in srv.records() if r.get("replay_id") == rid]
    assert [r["phase"] for r in steps] == ["started", "paused", "resumed", "cancelled"]
    cancelled = steps[-1]
    assert cancelled["sent"] == report["sent"] < 40
    assert cancelled["scanned"] == report["scanned"]
    assert f"Replay {rid} cancelled" in cancelled["message"]


CONFIG_LOGGERS = ("millpond.sources", "millpond.pumps", "millpond.segments")


def test_configuration_changes_are_logged_with_what_changed(served, vendor):
    """Who changed what is read from the server's log: each create, change and delete of
    a source, a destination and a segment is one INFO record naming it and the fields."""
    srv = served("--log-format", "json")
    srv.wait_serving()
    hook = vendor("webhook")
    with srv.admin as admin:
        source = admin.post("/api/sources", json={"name": "web"}).json()
        admin.post("/api/sources/web/rotate-key").raise_for_status()
        admin.patch("/api/sources/web", json={"allowed_origins": ["https://a.example"]}
                    ).raise_for_status()
        dest = create_destination(admin, name="hook", type="webhook",
                                  settings=hook.destination_settings())
        admin.patch("/api/destinations/hook", json={"rate_limit": {"events_per_second": 5}}
                    ).raise_for_status()
        admin.post("/api/destinations/hook/disable").raise_for_status()
        admin.delete("/api/destinations/hook").raise_for_status()
        r = admin.post("/api/segments", json={"key": "buyers",
                                              "definition": {"event": "Order Completed"}})
        assert r.status_code == 201, r.text
        srv.wait_record(lambda rec: "segment(s) built" in rec["message"], what="built")
        admin.patch("/api/segments/buyers", json={"name": "Buyers"}).raise_for_status()
        admin.delete("/api/segments/buyers").raise_for_status()
        admin.delete("/api/sources/web").raise_for_status()
    told = [(r["logger"], r["phase"], r["message"]) for r in srv.records()
            if r["logger"] in CONFIG_LOGGERS and r.get("phase")]
    assert told == [
        ("millpond.sources", "created", f"source web created ({source['id']}, pipelines)"),
        ("millpond.sources", "key_rotated",
         "source web: write key rotated (the old one is refused from now on)"),
        ("millpond.sources", "changed", "source web changed: allowed_origins"),
        ("millpond.pumps", "created", f"destination hook created ({dest['id']}, webhook, "
         f"enabled); delivering the events after seq 0"),
        ("millpond.pumps", "changed", "destination hook changed: rate_limit"),
        ("millpond.pumps", "changed", "destination hook changed: enabled (disabled)"),
        ("millpond.pumps", "deleted", f"destination hook deleted ({dest['id']}); its"
         " replays' history stays readable"),
        ("millpond.segments", "created",
         f"segment buyers created ({r.json()['id']}); building it over the log"),
        ("millpond.segments", "changed", "segment buyers changed: name"),
        ("millpond.segments", "deleted", f"segment buyers deleted ({r.json()['id']})"),
        ("millpond.sources", "deleted",
         f"source web deleted ({source['id']}): its events stay in the log"),
    ]
    built = srv.wait_record(lambda rec: "segment(s) built" in rec["message"])
    assert built["message"].endswith(": buyers (0 members)"), built
