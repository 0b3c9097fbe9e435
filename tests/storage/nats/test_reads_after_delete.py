"""A read right after this process deleted events never returns them, even from a
replica that has not applied the delete yet (a loaded CI run read expired events back)."""

from __future__ import annotations

import asyncio

import nats.js.client

from millpond.storage.nats import LogSettings, open_log
from millpond.storage.nats.tombstones import Tombstones
from tests.storage.helpers import ev


def test_deleted_events_are_gone_from_this_process_reads_while_a_replica_still_has_them(
        settings: LogSettings, monkeypatch):
    log = open_log(settings)
    try:
        seqs = [s for s in log.submit([ev(f"m{i}", ts=i) for i in range(5)]).result(10).seqs
                if s is not None]
        assert len(seqs) == 5
        # The worst lagging replica: the delete is acknowledged, every copy still holds it.
        async def acknowledged_not_applied(self, stream_name: str, seq: int) -> bool:
            return True

        monkeypatch.setattr(nats.js.client.JetStreamContext, "delete_msg",
                            acknowledged_not_applied)
        gone = [seqs[1], seqs[3]]
        log.delete(gone)
        kept = [s for s in seqs if s not in gone]

        async def reads():
            return (await log.read(0, 100), await log.get(seqs[1]), await log.get(seqs[2]),
                    await log.fetch(seqs))

        read, got_gone, got_kept, fetched = asyncio.run(reads())
        assert [e.seq for e in read] == kept
        assert got_gone is None and got_kept is not None
        assert sorted(fetched) == kept
    finally:
        log.close()


def test_tombstones_are_forgotten_once_every_replica_has_had_time_to_apply_them():
    remembered, forgotten = Tombstones(), Tombstones(remember=0.0)
    remembered.add([3, 4])
    forgotten.add([3, 4])
    assert 3 in remembered and 4 in remembered and 5 not in remembered
    assert not forgotten and 3 not in forgotten
