"""Warehouse and storage destinations under faults, through ``millpond serve``: a value that
does not fit its column, a table altered by hand, the database going away, S3 (moto)."""

from __future__ import annotations

import threading

import psycopg
import pytest

from millpond.warehouses.parquet import read_table
from millpond.warehouses.parquet.settings import make_store, parse_settings
from tests.support.delivery import create_destination, send_batch, stats
from tests.support.s3 import ACCESS_KEY, REGION, SECRET_KEY
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow


def orders(start: int, n: int, revenue=None) -> list[dict]:
    return [{"type": "track", "event": "Order Completed", "messageId": f"o-{i}",
             "userId": f"u{i % 7}", "properties": {"revenue": i if revenue is None else revenue}}
            for i in range(start, start + n)]


def query(dsn: str, sql: str) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(sql)
        return cur.fetchall() if cur.description else []


def test_type_conflict_is_discarded_and_counted_and_a_hand_altered_table_dead_letters(
        server, pg_dsn):
    source = server.create_source("web")
    send_batch(server.url, source["write_key"], orders(0, 20))
    with server.admin as admin:
        create_destination(admin, name="wh", type="postgres",
                           settings={"dsn": pg_dsn, "batch_interval_seconds": 5})
        wait_until(lambda: stats(admin, "wh")["cursor"] >= 20, timeout=60, what="first sync")
        # A value that does not fit its column: stored without it, in discards, counted.
        send_batch(server.url, source["write_key"], orders(20, 1, revenue="lots"))
        wait_until(lambda: stats(admin, "wh")["cursor"] >= 21, timeout=60, what="conflict")
        tables = stats(admin, "wh")["loads"]["tables"]
        assert tables["order_completed"]["discards"] == 1
        discards = query(pg_dsn, "SELECT message_id, table_name, column_name, value, reason "
                                 "FROM millpond.millpond_discards")
        assert discards[0][0] == "o-20" and discards[0][2] == "revenue"
        assert "lots" in discards[0][3] and discards[0][4]
        assert query(pg_dsn, "SELECT revenue FROM millpond.order_completed "
                             "WHERE id = 'o-20'") == [(None,)]
        # Someone changes a column's type by hand: the batch is dead-lettered with the reason.
        (wanted,) = query(pg_dsn, "SELECT data_type FROM information_schema.columns WHERE "
                                  "table_name = 'order_completed' AND column_name = 'revenue'")[0]
        query(pg_dsn, "ALTER TABLE millpond.order_completed ALTER COLUMN revenue TYPE boolean "
                      "USING revenue > 0")
        send_batch(server.url, source["write_key"], orders(21, 5))
        wait_until(lambda: stats(admin, "wh")["dead_letters_waiting"] == 5, timeout=60,
                   what="dead letters")
        dead = admin.get("/api/destinations/wh/dead-letters").json()
        reasons = {d["reason"] for d in dead["dead_letters"]}
        assert any("changed by hand" in r and "revenue" in r for r in reasons), reasons
        assert query(pg_dsn, "SELECT count(*) FROM millpond.tracks")[0][0] == 21
        # Fixed, then redriven: every event once.
        query(pg_dsn, f"ALTER TABLE millpond.order_completed ALTER COLUMN revenue TYPE {wanted} "
                      "USING revenue::int")
        r = admin.post("/api/destinations/wh/dead-letters/redrive", json={})
        assert r.status_code == 202, r.text
        wait_until(lambda: query(pg_dsn, "SELECT count(*) FROM millpond.tracks")[0][0] == 26,
                   timeout=60, what="redrive")
    assert query(pg_dsn, "SELECT count(*), count(DISTINCT id) FROM millpond.order_completed"
                 ) == [(26, 26)]


def test_the_database_going_away_mid_sync_is_retried_without_loss(server, pg_private):
    dsn = pg_private.dsn()
    source = server.create_source("web")
    send_batch(server.url, source["write_key"], orders(0, 300))
    with server.admin as admin:
        create_destination(admin, name="wh", type="postgres",
                           settings={"dsn": dsn, "batch_interval_seconds": 5,
                                     "connect_timeout_seconds": 1})
        wait_until(lambda: stats(admin, "wh")["cursor"] >= 300, timeout=60, what="first sync")
        pg_private.stop("immediate")
        send_batch(server.url, source["write_key"], orders(300, 300))
        wait_until(lambda: stats(admin, "wh")["state"] in ("retrying", "failing"),
                   timeout=60, what="retrying")
        st = stats(admin, "wh")
        assert st["last_error"] and st["events_behind"] >= 300
        assert st["loads"]["last_error"]
        pg_private.start()
        wait_until(lambda: stats(admin, "wh")["cursor"] >= 600, timeout=120, what="recovery")
        assert stats(admin, "wh")["dead_letters_waiting"] == 0
    assert query(dsn, "SELECT count(*), count(DISTINCT id) FROM millpond.tracks") == [(600, 600)]


def test_parquet_on_s3_holds_every_event_once(server, moto_s3):
    bucket = moto_s3.new_bucket()
    settings = {"path": f"s3://{bucket}/events", "endpoint_url": moto_s3.endpoint,
                "access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY,
                "region": REGION, "batch_interval_seconds": 5}
    source = server.create_source("web")
    send_batch(server.url, source["write_key"], orders(0, 500))
    with server.admin as admin:
        dest = create_destination(admin, name="lake", type="parquet", settings=settings)
        assert dest["settings"]["secret_access_key"] != SECRET_KEY
        wait_until(lambda: stats(admin, "lake")["cursor"] >= 500, timeout=60, what="sync")
        send_batch(server.url, source["write_key"], orders(500, 100))
        wait_until(lambda: stats(admin, "lake")["cursor"] >= 600, timeout=60, what="live")
        bad = admin.post("/api/destinations", json={
            "name": "lake2", "type": "parquet",
            "settings": {**settings, "path": "s3://no-such-bucket/events"}})
        assert bad.status_code == 400 and bad.json()["error"]["field"].startswith("settings")
    table = read_table(make_store(parse_settings(settings)))
    ids = table.column("message_id").to_pylist()
    assert sorted(ids) == sorted(f"o-{i}" for i in range(600))


def test_parquet_on_s3_after_a_crash_mid_upload_holds_every_event_once(server, moto_s3,
                                                                      monkeypatch):
    """The server is SIGKILLed while its upload is half done: the data files are in the
    bucket, the manifest (the commit) is not. After the restart every event is read back
    exactly once, and the orphan files of the first attempt are ignored."""
    from moto.s3.responses import S3Response

    reached, release = threading.Event(), threading.Event()
    put_object = S3Response.put_object

    def stalled_put(self):  # moto serves S3 from a thread of this process
        if "_manifests/" in self.parse_key_name() and not release.is_set():
            reached.set()
            release.wait(60)
            return 500, {}, b"upload abandoned"  # the client is gone: nothing is stored
        return put_object(self)

    monkeypatch.setattr(S3Response, "put_object", stalled_put)
    bucket = moto_s3.new_bucket()
    settings = {"path": f"s3://{bucket}/events", "endpoint_url": moto_s3.endpoint,
                "access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY,
                "region": REGION, "batch_interval_seconds": 5}
    source = server.create_source("web")
    send_batch(server.url, source["write_key"], orders(0, 800))
    with server.admin as admin:
        create_destination(admin, name="lake", type="parquet", settings=settings)
    assert reached.wait(60), "the upload never reached its manifest"
    server.kill()
    release.set()
    store = make_store(parse_settings(settings))
    orphans = [k for k in store.list("") if k.endswith(".parquet")]
    assert orphans, "the crash left no data file behind: not mid-upload"
    server.start()
    send_batch(server.url, source["write_key"], orders(800, 200))
    with server.admin as admin:
        wait_until(lambda: stats(admin, "lake")["cursor"] >= 1000, timeout=90,
                   what="sync after the restart")
    ids = read_table(store).column("message_id").to_pylist()
    assert sorted(ids) == sorted(f"o-{i}" for i in range(1000))
