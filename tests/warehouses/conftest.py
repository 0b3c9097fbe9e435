"""Fixtures for the warehouse loaders: a real PostgreSQL and a real (moto) S3 API on loopback.

The servers are started once per session (a PostgreSQL cluster takes about a second) and every
test gets a fresh database or bucket, so tests stay independent. A test that stops or crashes
its server uses ``pg_private`` instead, a cluster of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

from millpond.warehouses.postgres import PostgresLoader, parse_settings
from tests.support.postgres import PostgresServer
from tests.support.s3 import ACCESS_KEY, REGION, SECRET_KEY, MotoS3


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    yield server
    server.destroy()


@pytest.fixture
def pg_dsn(pg_server: PostgresServer) -> str:
    """A fresh, empty database on the session's server."""
    return pg_server.create_database(f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def pg_private() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster for this test alone (to stop, crash and restart)."""
    server = PostgresServer().start()
    yield server
    server.destroy()


@pytest.fixture
def make_loader(pg_dsn: str) -> Iterator[Callable[..., PostgresLoader]]:
    """``make_loader(**settings)``: a loader on the test's database; closed at teardown."""
    loaders: list[PostgresLoader] = []

    def make(**settings) -> PostgresLoader:
        loader = PostgresLoader(parse_settings({"dsn": pg_dsn, **settings}))
        loaders.append(loader)
        return loader

    yield make
    for loader in loaders:
        loader.close()


@pytest.fixture
def sql(pg_dsn: str) -> Iterator[Callable[..., list[tuple]]]:
    """``sql(query, *params)``: run a query on the test's database (autocommit), rows back."""
    conn = psycopg.connect(pg_dsn, autocommit=True)

    def run(query: str, *params) -> list[tuple]:
        cur = conn.execute(query, params or None)
        return cur.fetchall() if cur.description else []

    yield run
    conn.close()


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    server = MotoS3().start()
    yield server
    server.stop()


@pytest.fixture(params=["local", "s3"])
def location(request, tmp_path, moto_s3) -> dict:
    """Settings for a fresh location: a temp dir, or a new bucket on the moto server."""
    if request.param == "local":
        return {"path": str(tmp_path / "lake")}
    bucket = moto_s3.new_bucket()
    return {"path": f"s3://{bucket}/events", "endpoint_url": moto_s3.endpoint,
            "access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY, "region": REGION}
