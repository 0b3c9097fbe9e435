"""Warehouse and storage destinations end to end: ``millpond serve`` with a real PostgreSQL
(or a local Parquet directory), events in through the collector, rows out."""

from __future__ import annotations

import random

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
    # SIGKILL mid-batch: this test holds tracks locked, so the next batch stops half-way
    # (some tables copied, tracks waiting); then a restart: neither duplicates nor gaps.
    with psycopg.connect(pg_dsn) as blocker:
        blocker.execute("LOCK TABLE millpond.tracks IN ACCESS EXCLUSIVE MODE")
        send_batch(server.url, source["write_key"], events(3000, 10_600))
        wait_until(lambda: loads_waiting_on_a_lock(pg_dsn), timeout=60,
                   what="a batch stopped half-way")
        server.kill()
    server.start()
    with server.admin as admin:
        wait_until(lambda: stats(admin, "wh")["cursor"] >= 13_600, timeout=120,
                   what="after restart")
        # The per-table totals are stored: the restart kept them, and the batch loaded
        # again after the kill counts once, so they equal the tables' rows.
        tables = stats(admin, "wh")["loads"]["tables"]
        want = expected(13_600)
        assert {t: tables[t]["rows"] for t in want} == {t: n for t, (n, _) in want.items()}
        assert all(tables[t]["discards"] == 0 and tables[t]["last_load"] for t in want)
        metrics = admin.get("/metrics").text
    assert counts(pg_dsn) == expected(13_600)
    line = (f'millpond_warehouse_rows_loaded_total{{destination="wh",table="order_completed"}}'
            f' {float(want["order_completed"][0])}')
    assert line in metrics.splitlines(), [m for m in metrics.splitlines() if "warehouse" in m]
    assert 'millpond_warehouse_discards_total{destination="wh",table="tracks"} 0.0' in metrics
    assert 'millpond_warehouse_last_load_timestamp_seconds{destination="wh",table="tracks"}' \
        in metrics


def loads_waiting_on_a_lock(dsn: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                            "'millpond-warehouse' AND wait_event_type = 'Lock'"
                            ).fetchone()[0] > 0


def test_users_hold_the_newest_traits_and_a_new_property_adds_a_column(server, pg_dsn):
    """Identifies delivered in shuffled order, part before the destination exists (first
    sync) and part live: ``users`` ends with each trait's newest value by ``_timestamp``."""
    rnd = random.Random(16)
    versions = [{"type": "identify", "messageId": f"id-{u}-{k}", "userId": f"user-{u}",
                 "traits": {"plan": f"v{k}", "seats": k * 10,
                            "_timestamp": f"2026-11-20T10:{k:02d}:00Z"}}
                for u in range(30) for k in range(6)]
    rnd.shuffle(versions)
    source = server.create_source("web")
    send_batch(server.url, source["write_key"], versions[:90])
    with server.admin as admin:
        create_destination(admin, name="wh", type="postgres",
                           settings={"dsn": pg_dsn, "batch_interval_seconds": 5})
        wait_until(lambda: stats(admin, "wh")["cursor"] >= 90, timeout=60, what="first sync")
        send_batch(server.url, source["write_key"], versions[90:])
        wait_until(lambda: stats(admin, "wh")["cursor"] >= 180, timeout=60, what="live")
        assert query(pg_dsn, "SELECT count(*) FROM millpond.identifies") == [(180,)]
        assert query(pg_dsn, "SELECT id, plan, seats FROM millpond.users ORDER BY id") == [
            (f"user-{u}", "v5", 50) for u in sorted(range(30), key=lambda u: f"user-{u}")]
        # A property never seen before: a new column, with its value.
        send_batch(server.url, source["write_key"], [
            {"type": "track", "event": "Order Completed", "messageId": "o-1", "userId": "u",
             "properties": {"revenue": 5}}])
        wait_until(lambda: stats(admin, "wh")["cursor"] >= 181, timeout=60, what="a track")
        cols = columns(pg_dsn, "order_completed")
        assert "revenue" in cols and "coupon_code" not in cols
        send_batch(server.url, source["write_key"], [
            {"type": "track", "event": "Order Completed", "messageId": "o-2", "userId": "u",
             "properties": {"revenue": 7, "couponCode": "XMAS"}}])
        wait_until(lambda: stats(admin, "wh")["cursor"] >= 182, timeout=60, what="new column")
    assert columns(pg_dsn, "order_completed") - cols == {"coupon_code"}
    assert query(pg_dsn, "SELECT id, coupon_code FROM millpond.order_completed ORDER BY id"
                 ) == [("o-1", None), ("o-2", "XMAS")]


def query(dsn: str, sql: str) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(sql).fetchall()


def columns(dsn: str, table: str) -> set[str]:
    return {r[0] for r in query(dsn, "SELECT column_name FROM information_schema.columns "
                                     f"WHERE table_schema = 'millpond' AND table_name = '{table}'")}


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


def _schema_counts(dsn: str, schema: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return {t: conn.execute(f'SELECT count(DISTINCT id) FROM "{schema}".{t}').fetchone()[0]
                for t in ("tracks", "identifies", "pages")}


def test_a_warehouse_that_has_loaded_moves_only_to_a_place_holding_its_loads(server, pg_dsn):
    """Pointed at an empty schema it would load only the later events there, leaving the
    history behind: refused, naming the setting, nothing changed. A schema the tables
    were moved to, or the same database under another DSN, is taken, and loading goes on
    there with nothing missing."""
    source = server.create_source("web")
    send_batch(server.url, source["write_key"], events(60))
    with server.admin as admin:
        create_destination(admin, name="wh", type="postgres",
                           settings={"dsn": pg_dsn, "batch_interval_seconds": 5})
        wait_until(lambda: stats(admin, "wh")["cursor"] >= 60, timeout=60, what="first sync")
        settings = {"dsn": pg_dsn, "batch_interval_seconds": 5}
        r = admin.patch("/api/destinations/wh", json={"settings": {**settings,
                                                                  "schema": "fresh"}})
        assert r.status_code == 409, r.text
        error = r.json()["error"]
        assert error["field"] == "settings.schema", error
        assert "seq 60" in error["message"] and "schema 'fresh'" in error["message"]
        assert "create a new destination" in error["message"]
        assert "schema" not in admin.get("/api/destinations/wh").json()["settings"]
    refused = invoke(server, "destinations", "update", "wh", "--setting", "schema=fresh",
                     code=1).output
    assert refused.startswith("error: ") and len(refused.strip().splitlines()) == 1, refused
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT to_regnamespace('fresh')").fetchone() == (None,)
        conn.execute("ALTER SCHEMA millpond RENAME TO moved")
    with server.admin as admin:
        r = admin.patch("/api/destinations/wh", json={"settings": {
            **settings, "schema": "moved", "dsn": pg_dsn + "?application_name=warehouse"}})
        assert r.status_code == 200, r.text
        send_batch(server.url, source["write_key"], events(12, 60))
        wait_until(lambda: stats(admin, "wh")["cursor"] >= 72, timeout=60, what="loading on")
    per = {k: sum(1 for i in range(72) if KINDS[i % 6] == k) for k in KINDS}
    assert _schema_counts(pg_dsn, "moved") == {
        "tracks": per["track"], "identifies": per["identify"], "pages": per["page"]}


def test_a_parquet_destination_that_has_loaded_moves_only_to_a_directory_of_its_files(
        server, tmp_path):
    source = server.create_source("web")
    send_batch(server.url, source["write_key"], events(30))
    first, empty, moved = tmp_path / "lake", tmp_path / "empty", tmp_path / "moved"
    with server.admin as admin:
        create_destination(admin, name="files", type="parquet",
                           settings={"path": str(first), "batch_interval_seconds": 5})
        wait_until(lambda: stats(admin, "files")["cursor"] >= 30, timeout=60, what="sync")
        r = admin.patch("/api/destinations/files", json={"settings": {
            "path": str(empty), "batch_interval_seconds": 5}})
        assert r.status_code == 409 and r.json()["error"]["field"] == "settings.path", r.text
        admin.post("/api/destinations/files/disable").raise_for_status()
        first.rename(moved)
        r = admin.patch("/api/destinations/files",
                        json={"settings": {"path": str(moved), "batch_interval_seconds": 5},
                              "enabled": True})
        assert r.status_code == 200, r.text
        send_batch(server.url, source["write_key"], events(6, 30))
        wait_until(lambda: stats(admin, "files")["cursor"] >= 36, timeout=60, what="on")
    ids = read_table(LocalStore(moved)).column("message_id").to_pylist()
    assert sorted(ids) == sorted(f"m-{i}" for i in range(36))
