"""The state database's connections: unreachable is one clear StorageUnavailable, and each
thread gets a connection of its own in the configured schema."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest

from millpond.devcluster.ports import free_ports
from millpond.storage.contracts import StorageUnavailable
from millpond.storage.models import Source
from millpond.storage.postgres import PgSourceStore, PgState


def test_unreachable_postgresql_is_storage_unavailable_naming_it():
    port = free_ports(1)[0]
    with pytest.raises(StorageUnavailable, match="cannot reach PostgreSQL"):
        PgState(f"postgresql://postgres:x@127.0.0.1:{port}/postgres", connect_timeout=2)


def test_stores_live_in_their_schema_with_a_connection_per_thread(dev_cluster):
    dsn = dev_cluster.postgres.dsn()
    schema = f"t{uuid.uuid4().hex[:12]}"
    state = PgState(dsn, schema=schema)
    try:
        sources = PgSourceStore(state)
        sources.create(Source("src_1", "web", "pipelines", "wk1", True))
        seen: list[int] = []

        def other_thread() -> None:
            seen.append(id(state.conn()))
            assert sources.get("web").id == "src_1"

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join(10)
        assert seen and seen[0] != id(state.conn())
        with psycopg.connect(dsn) as conn:  # the table is in that schema, not in public
            rows = conn.execute("SELECT table_schema FROM information_schema.tables"
                                " WHERE table_name = 'sources'").fetchall()
            assert (schema,) in rows and ("public",) not in rows
    finally:
        state.close()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")  # type: ignore[arg-type]


def test_a_server_gone_mid_run_is_storage_unavailable_then_reconnects(dev_cluster):
    server = dev_cluster.postgres
    schema = f"t{uuid.uuid4().hex[:12]}"
    state = PgState(server.dsn(), schema=schema)
    try:
        sources = PgSourceStore(state)
        sources.create(Source("src_1", "web", "pipelines", "wk1", True))
        server.stop("immediate")  # what a crash looks like to clients
        try:
            with pytest.raises(StorageUnavailable):
                sources.get("web")
            with pytest.raises(StorageUnavailable):
                sources.create(Source("src_2", "app", "pipelines", "wk2", True))
        finally:
            server.start()
        assert [s.id for s in sources.list()] == ["src_1"]  # nothing half-written
    finally:
        state.close()
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")  # type: ignore[arg-type]


def test_processes_opening_a_fresh_place_at_once_all_open_it(dev_cluster):
    """Two ``serve`` processes started together on a new place (``millpond dev-cluster``
    does) create the same schema and tables at once: the state's (here the index store's)
    and the log's dedupe table's, on its own connection. PostgreSQL's catalog refuses the
    second concurrent ``CREATE … IF NOT EXISTS`` of a name ("duplicate key … typname"), so
    every creation runs under one advisory lock."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from millpond.storage.postgres.dedupe import INDEX_SCHEMA, PgDedupeTable

    dsn = dev_cluster.postgres.dsn()

    def open_it(place: str, start: threading.Barrier) -> None:
        async def log_table() -> None:
            table = PgDedupeTable(dsn, schema=place)
            try:
                await table.unindexed(0)  # connects, creating its tables
            finally:
                await table.close()

        start.wait(10)
        state = PgState(dsn, schema=place)
        try:
            state.create_tables(INDEX_SCHEMA)
            asyncio.run(log_table())
        finally:
            state.close()

    for _ in range(4):
        place = f"t{uuid.uuid4().hex[:12]}"
        start = threading.Barrier(3)
        try:
            with ThreadPoolExecutor(3) as pool:
                for opened in [pool.submit(open_it, place, start) for _ in range(3)]:
                    opened.result(60)  # raises what an opening raised
        finally:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {place} CASCADE")  # type: ignore[arg-type]
