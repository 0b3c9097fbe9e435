"""Dedupe past the stream's window: the stream alone stores a late retry again; with the
PostgreSQL dedupe table the log refuses it, however late, and finds events by messageId."""

from __future__ import annotations

import asyncio
import time

import msgspec
import psycopg
import pytest

from millpond.storage.nats import open_log
from millpond.storage.postgres import PgDedupeTable
from tests.storage.helpers import ev

WINDOW = 0.2  # seconds the stream remembers a Nats-Msg-Id, so the test outlives it


@pytest.mark.serial  # the second submit must land inside the 0.2 s window
def test_a_retry_after_the_window_is_stored_again_without_a_dedupe_table(settings):
    log = open_log(msgspec.structs.replace(settings, duplicate_window=WINDOW))
    try:
        [first] = log.submit([ev("m1")]).result(10).seqs
        assert log.submit([ev("m1")]).result(10).seqs == [None]  # inside the window
        time.sleep(WINDOW * 3)
        [again] = log.submit([ev("m1")]).result(10).seqs
        assert again is not None and again > first  # why the table exists
    finally:
        log.close()


def test_the_dedupe_table_refuses_a_retry_however_late_and_finds_it(dev_cluster, settings):
    dsn = dev_cluster.postgres.dsn()
    schema = settings.stream.lower()
    log = open_log(msgspec.structs.replace(settings, duplicate_window=WINDOW),
                   PgDedupeTable(dsn, schema=schema))  # creates the schema
    try:
        [first, second] = log.submit([ev("m1"), ev("m2", "src_b")]).result(10).seqs
        time.sleep(WINDOW * 3)
        assert log.submit([ev("m2", "src_b"), ev("m1"), ev("m3")]).result(10).seqs[:2] == [
            None, None]
        found = asyncio.run(log.find("src_b", "m2"))
        assert found is not None and found.seq == second
        assert asyncio.run(log.find("src_a", "m2")) is None
        assert [e.seq for e in asyncio.run(log.read(0, 10))] == [first, second, first + 2]
    finally:
        log.close()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")  # type: ignore[arg-type]
