"""Checkpoint: a replay's ledger keys are window positions; its outcome rows list seqs."""

from __future__ import annotations

import asyncio
import time

import pytest

from millpond.collector.validation import normalize
from millpond.delivery.ledger import Ledger
from millpond.delivery.runs import Checkpoint
from millpond.delivery.slices import WindowSlice
from millpond.storage import StorageConfig, open_storage
from millpond.storage.contracts import StorageUnavailable
from millpond.storage.models import Run, RunKind, RunState, Window, WindowCursor
from millpond.timeutil import format_ms

BASE = 1_700_000_000_000
SENT = ("a", "sent", "")
SKIP = ("", "skipped", "no action handles group")
RECEIVED = ("", "received", "")


class FailsOnce:
    """The run store, refusing the first checkpoint (a full disk), as the pump sees it."""

    def __init__(self, runs):
        self.runs = runs
        self.refused = 0

    def checkpoint(self, run_id, **kwargs):
        if not self.refused:
            self.refused += 1
            raise StorageUnavailable("disk full")
        self.runs.checkpoint(run_id, **kwargs)


@pytest.mark.parametrize("backend", ["sqlite", "memory"])
def test_a_replay_lists_the_seqs_of_its_positions_even_after_a_failed_write(
        tmp_path, backend):
    storage = open_storage(StorageConfig(backend=backend, data_dir=str(tmp_path / "data"),
                                         synchronous="NORMAL"))
    try:
        # event time runs against arrival: the window reads seqs 5, 4, 3, 2 (positions 0-3)
        events = [normalize({"type": "track", "event": "e", "userId": "u",
                             "messageId": f"m{i}", "timestamp": format_ms(BASE + 5 - i)},
                            source_id="s", received_ms=int(time.time() * 1000))
                  for i in range(5)]
        storage.log.submit(events).result(10)
        run = storage.runs.create(Run("replay-1", "d1", RunKind.REPLAY, RunState.RUNNING))
        source = WindowSlice(storage.index, Window(0, 1 << 62, None, None), None, chunk=2)
        runs = FailsOnce(storage.runs)
        checkpoint = Checkpoint(runs, run, source, start=-1, scanned=True)  # type: ignore[arg-type]
        ledger = Ledger(-1)

        async def read(n):
            return [await source.next_chunk(0) for _ in range(n)]

        chunks = asyncio.run(read(2))
        assert [[r.seq for r in c.rows] for c in chunks] == [[5, 4], [3, 2]]
        for pos, pending in ((0, 1), (1, 0), (2, 1), (3, 1)):
            ledger.open(pos, pending, counts=None if pending else [SKIP])

        def save():
            taken, outcomes = ledger.take(), ledger.take_outcomes()
            try:
                checkpoint(*taken, outcomes)
            except StorageUnavailable:
                ledger.give_back(*taken)
                ledger.give_back_outcomes(outcomes)

        ledger.done_all([0, 2], SENT)  # positions 0-2 finished: the first chunk is passed
        save()
        assert runs.refused == 1 and storage.runs.get(run.id).cursor is None
        ledger.done_all([3], SENT)
        save()
        saved = storage.runs.get(run.id)
        assert saved.cursor == WindowCursor(BASE + 4, 2) and saved.scanned == 4
        assert saved.counts == {SENT: 3, SKIP: 1}

        def listed(key):  # newest first
            return storage.runs.outcome_events([run.id], [key], limit=10).seqs

        assert listed(SENT) == [2, 3, 5]
        assert listed(SKIP) == [4]
        assert listed(RECEIVED) == [2, 3, 4, 5]
        asyncio.run(source.aclose())
    finally:
        storage.close()
