"""A deletion reaches a ``parquet`` destination: the regulation's step for it is ``done``
with the count of rows its files lost, and the files a reader sees hold nobody else's
rows less (the rewrite itself, over S3 too and through a SIGKILL, is proven in
``tests/warehouses/test_parquet_erase.py``). The memory backend, a real directory."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from millpond.delivery.transport import HttpTransport
from millpond.regulations.blocklist import Blocklist
from millpond.regulations.forward import Forwarder
from millpond.regulations.job import Retries
from millpond.regulations.service import RegulationService
from millpond.storage.memory import MemoryStorage
from millpond.storage.models import Destination, RegulationType
from millpond.warehouses.batch import StoredEvent
from millpond.warehouses.parquet import ParquetWriter, parse_settings, read_table


def _event(seq: int, user: str) -> StoredEvent:
    return StoredEvent(seq, "src", {"type": "track", "userId": user, "event": "Clicked",
                                    "messageId": f"m{seq}", "properties": {"who": user},
                                    "receivedAt": "2026-12-01T10:00:00.000Z",
                                    "timestamp": "2026-12-01T10:00:00.000Z"})


def test_the_parquet_step_is_done_with_the_rows_removed(tmp_path: Path):
    lake = tmp_path / "lake"
    writer = ParquetWriter(parse_settings({"path": str(lake)}))
    for start in (1, 51):
        writer.load([_event(s, "ann-7f3e" if s % 3 == 0 else "bob")
                     for s in range(start, start + 50)])
    storage = MemoryStorage()
    storage.destinations.create(Destination("dst_1", "lake", "parquet", {"path": str(lake)},
                                            {"events_per_second": 100.0}, [], True,
                                            time.time(), 0))

    async def run():
        transport = HttpTransport(timeout=5)
        service = RegulationService(storage, Blocklist(), Forwarder(transport),
                                    retries=Retries(attempts=2, base_seconds=0.01,
                                                    follower_wait_seconds=0.1))
        reg = await service.create(RegulationType.DELETE, ["ann-7f3e"], [], "test")
        await service.wait_idle()
        await transport.aclose()
        return service.get(reg.id)

    done = asyncio.run(run())
    assert done.state == "finished"
    step = done.destinations["dst_1"]
    assert (step.state, step.removed, step.reason) == ("done", 33, None)
    assert read_table(writer.store)["seq"].to_pylist() == [s for s in range(1, 101) if s % 3]
    assert not [p for p in lake.rglob("*") if p.is_file() and b"ann-7f3e" in p.read_bytes()]
