"""The events behind a count say when the run is older than the outcome rows' retention
(its count then includes events no longer listed)."""

from __future__ import annotations

import asyncio
import time

from millpond.connections.behind import events_behind
from millpond.storage import StorageConfig, open_storage
from millpond.storage.models import Destination, Run, RunKind, RunState

SENT = ("a", "sent", "")


def test_a_run_older_than_the_retention_says_its_older_events_are_unlisted(tmp_path):
    storage = open_storage(StorageConfig(backend="memory", data_dir=str(tmp_path)))
    now = time.time()
    dest = storage.destinations.create(Destination("d1", "hook", "webhook", {}, {}, [], True,
                                                   now, 0, now))
    storage.runs.create(Run("r1", "d1", RunKind.LIVE, RunState.RUNNING, cursor=0,
                            created_at=now - 40 * 86_400))
    storage.runs.checkpoint("r1", cursor=3, counts={SENT: 3}, outcomes={SENT: [1, 2, 3]})

    def behind(days: int) -> dict:
        return asyncio.run(events_behind(storage.runs, storage.log, dest, run="live",
                                         step="sent", action="a", kept_days=days))

    assert (behind(30)["older_unlisted"], behind(30)["kept_days"]) == (True, 30)
    assert behind(60)["older_unlisted"] is False
    assert [e["seq"] for e in behind(30)["events"]] == [3, 2, 1]
    storage.close()
