"""Faults: tables altered by hand (terminal), a database going away (transient), bad settings."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from millpond.destinations.errors import SettingsError
from millpond.warehouses.batch import Loaded, Reject, Retry
from millpond.warehouses.postgres import PostgresLoader, check, parse_settings
from tests.support.postgres import free_port
from tests.warehouses.events import every_type, expected_rows, make_event


def test_a_column_type_changed_by_hand_is_terminal_and_names_table_and_column(make_loader,
                                                                              sql):
    loader = make_loader()
    assert isinstance(loader.load([make_event(0, "track")]), Loaded)
    sql("ALTER TABLE millpond.order_completed ALTER COLUMN quantity TYPE integer")
    batch = [make_event(4, "track"), make_event(5, "page")]
    outcome = loader.load(batch)
    assert isinstance(outcome, Reject)
    assert "millpond.order_completed column quantity" in outcome.reason
    assert "integer" in outcome.reason and "bigint" in outcome.reason
    assert sql("SELECT count(*) FROM millpond.tracks")[0][0] == 1  # nothing applied
    assert sql("SELECT count(*) FROM information_schema.tables WHERE table_schema = "
               "'millpond' AND table_name = 'pages'")[0][0] == 0 or sql(
        "SELECT count(*) FROM millpond.pages")[0][0] == 0
    # Widening by hand is fine; after the fix the same batch (a redrive) loads.
    sql("ALTER TABLE millpond.order_completed ALTER COLUMN quantity TYPE numeric")
    result = loader.load(batch)
    assert isinstance(result, Loaded) and result.clean
    assert sql("SELECT count(*) FROM millpond.tracks")[0][0] == 2


def test_a_not_null_added_by_hand_is_terminal_and_names_table_and_column(make_loader, sql):
    loader = make_loader()
    first = make_event(0, "track")
    assert isinstance(loader.load([first]), Loaded)
    sql("ALTER TABLE millpond.tracks ALTER COLUMN context_ip SET NOT NULL")
    second = make_event(4, "track")
    del second.event["context"]["ip"]
    outcome = loader.load([second])
    assert isinstance(outcome, Reject)
    assert "millpond.tracks column context_ip: NOT NULL" in outcome.reason
    assert sql("SELECT count(*) FROM millpond.order_completed")[0][0] == 1
    # A NOT NULL column millpond never fills, added by hand, blocks too.
    sql("ALTER TABLE millpond.tracks ALTER COLUMN context_ip DROP NOT NULL")
    sql("ALTER TABLE millpond.tracks ADD COLUMN owner text NOT NULL DEFAULT 'x'")
    sql("ALTER TABLE millpond.tracks ALTER COLUMN owner DROP DEFAULT")
    outcome = loader.load([second])
    assert isinstance(outcome, Reject)
    assert "millpond.tracks column owner: NOT NULL" in outcome.reason


def test_a_constraint_failing_inside_the_merge_is_terminal_with_the_server_detail(make_loader,
                                                                                  sql):
    loader = make_loader()
    assert isinstance(loader.load([make_event(0, "track")]), Loaded)
    sql("ALTER TABLE millpond.order_completed ADD CONSTRAINT cheap CHECK (revenue < 0) NOT VALID")
    outcome = loader.load([make_event(4, "track")])
    assert isinstance(outcome, Reject)
    assert "SQLSTATE 23514" in outcome.reason and "order_completed" in outcome.reason
    assert sql("SELECT count(*) FROM millpond.tracks")[0][0] == 1


def _wait_for_lock_wait(dsn: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                "'millpond-warehouse' AND wait_event_type = 'Lock'").fetchone()[0]
            if waiting:
                return
            time.sleep(0.05)
    raise AssertionError("the loader never blocked on the lock")


def test_the_database_going_away_mid_batch_is_transient_and_applies_nothing(pg_private):
    dsn = pg_private.create_database("wh")
    loader = PostgresLoader(parse_settings({"dsn": dsn}))
    events = every_type(400)
    first, second = events[:200], events[200:]
    assert isinstance(loader.load(first), Loaded)
    # Hold a lock on users so the loader stops halfway through its transaction: the event
    # tables are merged by then, users not yet.
    blocker = psycopg.connect(dsn)
    blocker.execute("LOCK TABLE millpond.users IN ACCESS EXCLUSIVE MODE")
    outcome: list = []
    thread = threading.Thread(target=lambda: outcome.append(loader.load(second)))
    thread.start()
    _wait_for_lock_wait(dsn)
    pg_private.stop("immediate")  # the server dies: no clean shutdown
    thread.join(30)
    blocker.close()
    assert len(outcome) == 1 and isinstance(outcome[0], Retry), outcome
    assert "connection" in outcome[0].reason or "SQLSTATE 57P" in outcome[0].reason
    # While the server is down, loads are transient failures too.
    down = loader.load(second)
    assert isinstance(down, Retry)
    pg_private.start()
    with psycopg.connect(dsn) as conn:
        tracks = conn.execute("SELECT count(*) FROM millpond.tracks").fetchone()[0]
    assert tracks == expected_rows(first)["tracks"]  # nothing of the failed batch
    result = loader.load(second)  # the retry, on a new connection
    assert isinstance(result, Loaded) and result.clean
    with psycopg.connect(dsn) as conn:
        for table, n in expected_rows(events).items():
            assert conn.execute(f"SELECT count(*) FROM millpond.{table}").fetchone()[0] == n
    loader.close()


def test_a_killed_connection_is_transient(make_loader, pg_dsn):
    loader = make_loader()
    assert isinstance(loader.load(every_type(20)), Loaded)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE application_name = 'millpond-warehouse'")
    outcome = loader.load(every_type(40)[20:])
    assert isinstance(outcome, Retry)
    assert isinstance(loader.load(every_type(40)[20:]), Loaded)


def test_unreachable_database_is_transient():
    loader = PostgresLoader(parse_settings({
        "dsn": f"postgresql://u:p@127.0.0.1:{free_port()}/db", "connect_timeout_seconds": 2}))
    outcome = loader.load([make_event(0, "track")])
    assert isinstance(outcome, Retry)
    assert "connection refused" in outcome.reason


def test_check_explains_bad_settings(pg_server, pg_dsn, sql):
    check(parse_settings({"dsn": pg_dsn}))  # fine, and leaves nothing behind
    assert sql("SELECT count(*) FROM information_schema.schemata "
               "WHERE schema_name = 'millpond'")[0][0] == 0
    cases = {
        pg_server.dsn(password="wrong"): "wrong password for user 'postgres'",
        pg_server.dsn("no_such_db"): "database 'no_such_db' does not exist",
        pg_server.dsn(user="nobody_here"): "nobody_here",
        f"postgresql://postgres:x@127.0.0.1:{free_port()}/postgres":
            "nothing accepts connections on 127.0.0.1:",
        "postgresql://postgres:x@no-such-host.invalid:5432/postgres": "unknown host",
    }
    for dsn, message in cases.items():
        with pytest.raises(SettingsError) as info:
            check(parse_settings({"dsn": dsn, "connect_timeout_seconds": 3}))
        assert info.value.field == "dsn"
        assert message in info.value.message, info.value.message
        assert "wrong" not in info.value.message or "password" in info.value.message


def test_check_reports_missing_rights(pg_server, pg_dsn, sql):
    sql("DROP ROLE IF EXISTS reader")
    sql("CREATE ROLE reader LOGIN PASSWORD 'pw'")
    sql("REVOKE CREATE ON DATABASE " + pg_dsn.rsplit("/", 1)[1] + " FROM PUBLIC")
    dsn = pg_dsn.replace("postgres:millpond-test-pw@", "reader:pw@")
    with pytest.raises(SettingsError) as info:
        check(parse_settings({"dsn": dsn}))
    assert "may not create schema 'millpond'" in info.value.message


def test_settings_validation():
    with pytest.raises(SettingsError) as info:
        parse_settings({"dsn": "postgresql://x", "batch_interval_seconds": 1})
    assert info.value.field == "batch_interval_seconds"
    with pytest.raises(SettingsError) as info:
        parse_settings({"dsn": "nonsense"})
    assert info.value.field == "dsn"
    with pytest.raises(SettingsError) as info:
        parse_settings({"dsn": "postgresql://x", "schema": "Bad-Name"})
    assert info.value.field == "schema"
    with pytest.raises(SettingsError) as info:
        parse_settings({"dsn": "postgresql://x", "typo": 1})
    assert info.value.field == "typo"
    settings = parse_settings({"dsn": "postgresql://x"})
    assert settings.batch_interval_seconds == 60 and settings.schema == "millpond"
    from millpond.warehouses.postgres import mask_settings

    masked = mask_settings({"dsn": "postgresql://bob:s3cret@db:5432/a"})
    assert "s3cret" not in masked["dsn"] and "bob" in masked["dsn"]


KILL_SCRIPT = """
import sys
sys.path.insert(0, {root!r})
from millpond.warehouses.postgres import PostgresLoader, parse_settings
from tests.warehouses.events import every_type
loader = PostgresLoader(parse_settings({{"dsn": {dsn!r}}}))
print(loader.load(every_type(400)[200:]), flush=True)
"""


def test_a_loader_killed_mid_batch_leaves_no_duplicate_and_no_gap(make_loader, pg_dsn, sql):
    """SIGKILL of the loading process halfway through its transaction: the server rolls the
    batch back, and loading it again (what a restarted delivery run does) completes it."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    events = every_type(400)
    assert isinstance(make_loader().load(events[:200]), Loaded)
    blocker = psycopg.connect(pg_dsn)
    blocker.execute("LOCK TABLE millpond.accounts IN ACCESS EXCLUSIVE MODE")
    root = str(Path(__file__).resolve().parents[2])
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT.format(root=root, dsn=pg_dsn)],
                            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for_lock_wait(pg_dsn)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        blocker.close()
    for table, n in expected_rows(events[:200]).items():
        assert sql(f"SELECT count(*) FROM millpond.{table}")[0][0] == n, table
    result = make_loader().load(events[200:])
    assert isinstance(result, Loaded) and result.clean
    for table, n in expected_rows(events).items():
        assert sql(f"SELECT count(*) FROM millpond.{table}")[0][0] == n, table
        assert sql(f"SELECT count(*) - count(DISTINCT id) FROM millpond.{table}")[0][0] == 0


def test_a_table_locked_by_someone_else_is_transient(make_loader, pg_dsn, sql):
    loader = make_loader(lock_timeout_seconds=0.5)
    assert isinstance(loader.load([make_event(0, "track")]), Loaded)
    with psycopg.connect(pg_dsn) as blocker:
        blocker.execute("LOCK TABLE millpond.order_completed IN ACCESS EXCLUSIVE MODE")
        outcome = loader.load([make_event(4, "track")])
    assert isinstance(outcome, Retry) and "55P03" in outcome.reason
    assert isinstance(loader.load([make_event(4, "track")]), Loaded)
    assert sql("SELECT count(*) FROM millpond.tracks")[0][0] == 2
