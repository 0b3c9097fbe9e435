"""An append that dies between the PubAck and its index row (the process or PostgreSQL
lost there) leaves a stored, unacknowledged message without a row; the next opening of
the log indexes it from its header (ids outside ASCII included), and a retry of the
append is then a duplicate."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import psycopg
import pytest

from millpond.storage.contracts import StorageUnavailable
from millpond.storage.models import EventQuery
from millpond.storage.nats import LogSettings, open_log
from millpond.storage.postgres import PgDedupeTable, PgEventIndex, PgState
from tests.storage.helpers import ev


@pytest.fixture
def schema(dev_cluster, settings: LogSettings) -> Iterator[str]:
    name = settings.stream.lower()
    yield name
    with psycopg.connect(dev_cluster.postgres.dsn(), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")  # type: ignore[arg-type]


def test_a_message_stored_without_its_row_is_indexed_at_the_next_open(dev_cluster, settings,
                                                                      schema, monkeypatch):
    dsn = dev_cluster.postgres.dsn()
    table = PgDedupeTable(dsn, schema=schema)
    log = open_log(settings, table)
    try:
        [kept] = log.submit([ev("m1", userId="åda", ts=10)]).result(10).seqs
        real_record = table.record

        async def lost(rows):
            raise StorageUnavailable("lost the connection to PostgreSQL (injected)")

        monkeypatch.setattr(table, "record", lost)
        with pytest.raises(StorageUnavailable):
            log.submit([ev("m2", userId="åda", ts=20, event="Signed Up")]).result(10)
        monkeypatch.setattr(table, "record", real_record)
    finally:
        log.close()
    assert asyncio.run(_seqs_in_stream(log)) == 2  # stored, though never acknowledged

    log = open_log(settings, PgDedupeTable(dsn, schema=schema))
    state = PgState(dsn, schema=schema)
    try:
        index = PgEventIndex(state, log.fetch)
        found = asyncio.run(index.person_events(["åda"]))
        assert [e.ts_ms for e in found] == [20, 10] and found[1].seq == kept
        assert [e.seq for e in asyncio.run(index.query(EventQuery(event_name="Signed Up")))] \
            == [found[0].seq]
        # the client's retry of the failed append: a duplicate of what the stream holds
        assert log.submit([ev("m2", userId="åda", ts=20)]).result(10).seqs == [None]
        assert asyncio.run(log.find("src_a", "m2")).seq == found[0].seq  # type: ignore[union-attr]
    finally:
        state.close()
        log.close()


async def _seqs_in_stream(log) -> int:
    import nats

    nc = await nats.connect(list(log._s.servers))
    try:
        return (await nc.jetstream().stream_info(log._s.stream)).state.messages
    finally:
        await nc.close()
