"""The outcome rows' retention job over each storage backend, with a clock the test moves:
it forgets the rows past the window in steps, and the counts stay."""

from __future__ import annotations

import asyncio
import time

import pytest

from millpond.delivery.outcomes import RECEIVED
from millpond.retention.outcomes import DAY, OutcomeRetention
from millpond.storage import StorageConfig, open_storage
from millpond.storage.models import Run, RunKind, RunState

SENT = ("a", "sent", "")


@pytest.fixture(params=["sqlite", "memory"])
def storage(request, tmp_path):
    opened = open_storage(StorageConfig(backend=request.param,
                                        data_dir=str(tmp_path / "data"), synchronous="NORMAL"))
    yield opened
    opened.close()


def test_the_job_forgets_rows_past_the_window_in_steps_and_keeps_the_counts(storage):
    runs = storage.runs
    runs.create(Run("r1", "d1", RunKind.LIVE, RunState.RUNNING, cursor=0))
    for start in range(0, 70, 10):  # seven checkpoints: fourteen rows
        seqs = list(range(start, start + 10))
        runs.checkpoint("r1", cursor=start + 9, counts={SENT: 10},
                        outcomes={RECEIVED: seqs, SENT: seqs})
    now = time.time()
    job = OutcomeRetention(runs, 30, clock=lambda: now + 29 * DAY, step=4)
    assert asyncio.run(job.run_once()) == 0  # 29 days on: all kept
    assert len(runs.outcome_events(["r1"], [SENT], limit=100).seqs) == 70
    job.clock = lambda: now + 31 * DAY
    assert asyncio.run(job.run_once()) == 14  # in four steps of at most four rows
    assert job.pruned == 14
    assert runs.outcome_events(["r1"], [SENT, RECEIVED]).seqs == []
    assert runs.get("r1").counts == {SENT: 70}
