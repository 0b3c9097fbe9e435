"""``millpond serve`` processes on the session's dev cluster (``dev_cluster`` fixture).

Each test gets a place of its own (the stream's and the schema's name), so servers of
different tests never share events or state; :func:`drop_place` removes it after.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path

from millpond.devcluster.cluster import DevCluster
from tests.support.server import ServerProcess


def new_place() -> str:
    return f"s{uuid.uuid4().hex[:12]}"


def cluster_args(cluster: DevCluster, role: str = "all") -> list[str]:
    return ["--log", cluster.nats.servers, "--state", cluster.postgres.dsn(),
            "--role", role]


def cluster_server(cluster: DevCluster, root: Path, name: str, place: str, *,
                   role: str = "all", lease: float = 3.0) -> ServerProcess:
    """A started ``millpond serve`` on ``cluster`` in ``place`` (its own data dir, for
    the lock and the admin token file; the admin token is the tests' own)."""
    data = root / name
    data.mkdir(parents=True, exist_ok=True)
    proc = ServerProcess(data, args=cluster_args(cluster, role),
                         extra_env={"MILLPOND_STORAGE_PLACE": place,
                                    "MILLPOND_LEASE_SECONDS": str(lease)})
    return proc.start()


def drop_place(cluster: DevCluster, place: str) -> None:
    """Remove ``place``'s stream and schema."""
    import nats
    import nats.js.errors
    import psycopg

    async def drop() -> None:
        nc = await nats.connect(cluster.nats.urls)
        try:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await nc.jetstream().delete_stream(place)
        finally:
            await nc.close()

    with contextlib.suppress(Exception):
        asyncio.run(drop())
    with psycopg.connect(cluster.postgres.dsn(), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {place} CASCADE")  # type: ignore[arg-type]
