"""Killing the stream's leader while a process appends: every append the log acknowledged
is stored exactly once, and the appends that failed go through when retried with the same
events (the same ``Nats-Msg-Id``), as an SDK retries a 503."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import nats
import pytest

from millpond.storage.contracts import StorageUnavailable
from millpond.storage.nats import LogSettings, open_log
from tests.storage.helpers import ev

pytestmark = pytest.mark.slow


async def leader_of(settings: LogSettings, timeout: float = 30.0) -> str:
    """The stream's leader, once it has one: on a starved machine a missed heartbeat can
    start an election just before the test looks."""
    nc = await nats.connect(list(settings.servers))
    try:
        deadline = time.monotonic() + timeout
        while True:
            info = await nc.jetstream().stream_info(settings.stream)
            if info.cluster is not None and info.cluster.leader:
                return info.cluster.leader
            assert time.monotonic() < deadline, f"no stream leader after {timeout} s"
            await asyncio.sleep(0.1)
    finally:
        await nc.close()


def test_acknowledged_appends_survive_the_loss_of_the_stream_leader(dev_cluster, settings):
    log = open_log(settings)
    acked: list[str] = []
    failures = 0
    gap_from = gap = 0.0
    killed = ""
    batch = 0
    try:
        while batch < 60:
            events = [ev(f"b{batch}-{k}", userId=f"u{k % 7}") for k in range(50)]
            if batch == 20:  # the leader dies with appends in flight
                killed = asyncio.run(leader_of(settings))
                future = log.submit(events)
                dev_cluster.nats.kill(killed)
                gap_from = time.monotonic()
            else:
                future = log.submit(events)
            try:
                result = future.result(60)
            except StorageUnavailable:
                failures += 1
                assert failures < 10, "the log never recovered"
                continue  # the same batch again, as a client retries
            if batch == 20 or (gap_from and not gap):
                gap = time.monotonic() - gap_from
            acked.extend(e.message_id for e, s in zip(events, result.seqs, strict=True)
                         if s is not None)
            batch += 1
        stored = Counter(json.loads(e.body)["messageId"]
                         for e in asyncio.run(log.read(0, 10_000)))
    finally:
        log.close()
        if killed:
            dev_cluster.nats.restart(killed)
    assert len(acked) == 60 * 50 and set(acked) == set(stored)
    assert max(stored.values()) == 1  # nothing stored twice, retries included
    print(f"\nstream leader {killed} killed: appends paused {gap:.1f}s, "
          f"{failures} appends failed at their deadline and were retried")
