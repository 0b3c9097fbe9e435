"""A stream of each test's own on the session's cluster, removed afterwards."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import nats
import nats.js.errors
import pytest

from millpond.storage.nats import LogSettings


async def drop_stream(servers: list[str], stream: str) -> None:
    nc = await nats.connect(servers)
    try:
        await nc.jetstream().delete_stream(stream)
    except nats.js.errors.NotFoundError:
        pass
    finally:
        await nc.close()


@pytest.fixture
def settings(dev_cluster) -> Iterator[LogSettings]:
    name = f"T{uuid.uuid4().hex[:12]}"
    s = LogSettings(servers=tuple(dev_cluster.nats.urls), stream=name, subject=name.lower())
    yield s
    asyncio.run(drop_stream(list(s.servers), s.stream))
