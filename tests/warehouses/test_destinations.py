"""Warehouse and storage destinations end to end: ``millpond serve`` with a real PostgreSQL
(or a local Parquet directory), events in through the collector, rows out."""

from __future__ import annotations

import psycopg
import pytest

from millpond.warehouses.parquet import read_table
from millpond.warehouses.parquet.stores import LocalStore
from tests.support.cli import invoke
from tests.support.delivery import create_destination, send_batch, stats
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

KINDS = ("identify", "track", "page", "screen", "group", "alias")


def events(n: int, start: int = 0) -> list[dict]:
    out = []
    for i in range(start, start + n):
        kind = KINDS[i % len(KINDS)]
        e = {"type": kind, "messageId": f"m-{i}", "userId": f"u{i % 50}"}
        if kind == "track":
            e |= {"event": "Order Completed", "properties": {"revenue": i}}
        elif kind in ("page", "screen"):
            e["name"] = "Home"
        elif kind == "group":
            e["groupId"] = "acme"
        elif kind == "alias":
            e["previousId"] = f"anon-{i}"
        elif kind == "identify":
            e["traits"] = {"plan": f"p{i}"}
        out.append(e)
    return out


def counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return {t: conn.execute(f"SELECT count(*), count(DISTINCT id) FROM millpond.{t}")
                .fetchone() for t in ("tracks", "identifies", "pages", "screens", "groups",
                                      "aliases", "order_completed")}


def expected(n: int) -> dict[str, tuple[int, int]]:
    per = {k: sum(1 for i in range(n) if KINDS[i % 6] == k) for k in KINDS}
    return {"tracks": (per["track"],) * 2, "identifies": (per["identify"],) * 2,
            "pages": (per["page"],) * 2, "screens": (per["screen"],) * 2,
            "groups": (per["group"],) * 2, "aliases": (per["alias"],) * 2,
            "order_completed": (per["track"],) * 2}


def test_postgres_first_sync_loads_history_then_live_then_survives_sigkill(server, pg_dsn):
    source = server.create_source("web")
    send_batch(server.url, source["write_key"], events(10_000))
    with server.admin as admin:
        create_destination(admin, name="wh", type="postgres",
                           settings={"dsn": pg_dsn, "batch_interval_seconds": 5})
        wait_until(lambda: stats(admin, "wh")["cursor"] >= 10_000, timeout=180,
                   what="first sync")
        assert counts(pg_dsn) == expected(10_000)
        loads = stats(admin, "wh")["loads"]
        assert loads["tables"]["tracks"]["rows"] == expected(10_000)["tracks"][0]
        # Live events follow.
        send_batch(server.url, source["write_key"], events(600, 10_000))
        wait_until(lambda: stats(admin, "wh")["cursor"] >= 10_600, timeout=60, what="live")
    assert counts(pg_dsn) == expected(10_600)
    # A replay is refused with the reason, in the API and the CLI, and nothing starts.
    with server.admin as admin:
        r = admin.post("/api/replays", json={"destination": "wh", "dry_run": True})
        assert r.status_code == 409 or r.status_code == 400, r.text
        assert "first sync already includes history" in r.json()["error"]["message"]
        assert admin.get("/api/replays").json()["replays"] == []
    table = invoke(server, "destinations", "stats", "wh").output
    assert "order_completed" in table and f"{expected(10_600)['tracks'][0]:,}" in table \
        or str(expected(10_600)["tracks"][0]) in table
    result = invoke(server, "replay", "start", "wh", code=1)
    assert "create a new destination to load again" in result.output
    assert len(result.output.strip().splitlines()) == 1
    # SIGKILL mid-load, restart: neither duplicates nor gaps.
    send_batch(server.url, source["write_key"], events(3000, 10_600))
    server.kill()
    server.start()
    with server.admin as admin:
        wait_until(lambda: stats(admin, "wh")["cursor"] >= 13_600, timeout=120,
                   what="after restart")
    assert counts(pg_dsn) == expected(13_600)


def test_wrong_dsn_is_a_settings_error_at_create_time(server, pg_server):
    bad = pg_server.dsn(password="Sekrit-9z")
    with server.admin as admin:
        r = admin.post("/api/destinations", json={"name": "wh", "type": "postgres",
                                                  "settings": {"dsn": bad}})
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["field"] == "settings.dsn", error
        assert "password" in error["message"], error
        assert "Sekrit-9z" not in r.text
        assert admin.get("/api/destinations/wh").status_code == 404
        # The same check guards a settings change; the destination keeps its settings.
        good = pg_server.dsn()
        create_destination(admin, name="wh", type="postgres", settings={"dsn": good})
        r = admin.patch("/api/destinations/wh", json={"settings": {"dsn": bad}})
        assert r.status_code == 400 and r.json()["error"]["field"] == "settings.dsn", r.text
        shown = admin.get("/api/destinations/wh").json()["settings"]["dsn"]
        assert "Sekrit-9z" not in shown and f"port={pg_server.port}" in shown


def test_parquet_to_a_directory_holds_every_event_once(server, tmp_path):
    source = server.create_source("web")
    send_batch(server.url, source["write_key"], events(1200))
    with server.admin as admin:
        create_destination(admin, name="files", type="parquet",
                           settings={"path": str(tmp_path), "batch_interval_seconds": 5})
        wait_until(lambda: stats(admin, "files")["cursor"] >= 1200, timeout=60,
                   what="parquet sync")
    table = read_table(LocalStore(tmp_path))
    ids = table.column("message_id").to_pylist()
    assert sorted(ids) == sorted(f"m-{i}" for i in range(1200))
