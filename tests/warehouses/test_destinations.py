"""Warehouse and storage destinations end to end: ``millpond serve`` with a real PostgreSQL
(or a local Parquet directory), events in through the collector, rows out."""

from __future__ import annotations

import psycopg
import pytest

from millpond.warehouses.parquet import read_table
from millpond.warehouses.parquet.stores import LocalStore
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
    send_batch(server.url, source["write_key"], events(3000))
    with server.admin as admin:
        create_destination(admin, name="wh", type="postgres",
                           settings={"dsn": pg_dsn, "batch_interval_seconds": 5})
        wait_until(lambda: stats(admin, "wh")["cursor"] >= 3000, timeout=120,
                   what="first sync")
        assert counts(pg_dsn) == expected(3000)
        loads = stats(admin, "wh")["loads"]
        assert loads["tables"]["tracks"]["rows"] == 500
        # Live events follow.
        send_batch(server.url, source["write_key"], events(600, 3000))
        wait_until(lambda: stats(admin, "wh")["cursor"] >= 3600, timeout=60, what="live")
    assert counts(pg_dsn) == expected(3600)
    # A replay is refused with the reason.
    with server.admin as admin:
        r = admin.post("/api/destinations/wh/replays", json={"from": "2000-01-01T00:00:00Z"})
    assert r.status_code in (400, 409, 422), r.text
    assert "first sync already includes history" in r.text
    # SIGKILL mid-load, restart: neither duplicates nor gaps.
    send_batch(server.url, source["write_key"], events(3000, 3600))
    server.kill()
    server.start()
    with server.admin as admin:
        wait_until(lambda: stats(admin, "wh")["cursor"] >= 6600, timeout=120,
                   what="after restart")
    assert counts(pg_dsn) == expected(6600)


def test_wrong_dsn_is_a_settings_error_at_create_time(server, pg_server):
    bad = pg_server.dsn(password="wrong")
    with server.admin as admin:
        r = admin.post("/api/destinations", json={"name": "wh", "type": "postgres",
                                                  "settings": {"dsn": bad}})
        assert r.status_code == 400, r.text
        assert r.json()["field"] == "settings.dsn" or "dsn" in r.text
        assert admin.get("/api/destinations/wh").status_code == 404


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
