"""Membership stays exact when events leave the log: the property of
``test_order_independence``, with a source's retention and people's deletions at random
moments between the arrivals.

Tracks arrive through a source keeping two days of arrivals, one batch a day; identifies
and aliases through one keeping everything (profiles are not undone by retention). At
random days the retention job runs, and a random user is deleted by a regulation (the
real deletion job, through the server's wiring); segments are created at random days
too. Whatever was removed and whenever, the memberships (and the Audience event each
person's sequence ends with) must equal a from-scratch computation over the events the
log still holds, at the same moment.
"""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from millpond.app.followers import LogFollowers
from millpond.delivery.transport import HttpTransport
from millpond.regulations.blocklist import Blocklist
from millpond.regulations.forward import Forwarder
from millpond.regulations.job import Retries
from millpond.regulations.service import RegulationService
from millpond.retention.expiry import RetentionJob
from millpond.segments.outputs import COMPUTED_SOURCE_ID
from millpond.segments.service import SegmentService
from millpond.sources.service import SourceService
from millpond.storage import Storage, StorageConfig, open_storage
from millpond.storage.memory import MemoryStorage
from millpond.storage.models import RegulationType

from .harness import DAY, Clock, Harness
from .test_order_independence import NOW, SEGMENTS, USERS, histories, messages, outcome

DAYS = 6


class Shop:
    """The incremental side: a harness with the two sources, the retention job and the
    regulation service wired as the server wires them."""

    def __init__(self, storage: Storage) -> None:
        self.h = Harness(storage, Clock(NOW))
        sources = SourceService(self.h.storage.sources)
        self.web = sources.create("web", retention="2d").id
        self.crm = sources.create("crm").id
        segments = SegmentService(self.h.storage, self.h.engine)
        self.retention = RetentionJob(self.h.storage.log, sources, clock=self.h.clock,
                                      on_removed=segments.events_removed)
        self.regulations = RegulationService(
            self.h.storage, Blocklist(), Forwarder(HttpTransport(timeout=1)),
            retries=Retries(base_seconds=0.01),
            followers=LogFollowers(self.h.follower, self.h.engine))

    async def send(self, batch: list[dict]) -> None:
        tracks = [m for m in batch if m["type"] == "track"]
        others = [m for m in batch if m["type"] != "track"]
        if tracks:
            await self.h.send(*tracks, source_id=self.web)
        if others:
            await self.h.send(*others, source_id=self.crm)

    async def delete(self, user: str) -> None:
        await self.regulations.create(RegulationType.DELETE, [user], [], "test")
        await self.regulations.wait_idle()

    async def follow(self) -> None:
        """What the engine's loop does: the log, then the changes that came due."""
        await self.h.settle()
        while await self.h.engine.run_due():
            await self.h.settle()


async def incremental(storage: Storage, msgs: list[dict], order: list[int], days: list[int],
                      creations: list[int], expiring: list[bool],
                      deleting: list[str | None]) -> Harness:
    shop = Shop(storage)
    arriving = [msgs[i] for i in order]
    created = 0
    for day in range(DAYS):
        shop.h.clock.now = NOW + day * DAY
        await shop.send([m for m, d in zip(arriving, days, strict=True) if d == day])
        while created < len(SEGMENTS) and creations[created] <= day:
            await shop.h.add_segment(*SEGMENTS[created])
            created += 1
        if day % 2 == 0:
            await shop.follow()
        if expiring[day]:
            await shop.retention.run_once()
        if deleting[day] is not None:
            await shop.delete(deleting[day])
    for segment in SEGMENTS[created:]:
        await shop.h.add_segment(*segment)
    await shop.follow()
    return shop.h


async def from_scratch(msgs: list[dict], kept: set[str], now: int) -> Harness:
    """The segments built over the events ``kept`` (their messageIds) at ``now``."""
    h = Harness(MemoryStorage(), Clock(now))
    await h.send(*sorted((m for m in msgs if m["messageId"] in kept),
                         key=lambda m: m["timestamp"]))
    await h.settle()
    for sid, key, definition in SEGMENTS:
        await h.add_segment(sid, key, definition)
    await h.settle()
    return h


async def kept_ids(h: Harness) -> set[str]:
    rows = await h.storage.log.read(0, 1_000_000)
    return {e["messageId"] for e in map(msgspec.json.decode, (r.body for r in rows))
            if e.get("source_id") != COMPUTED_SOURCE_ID}


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories, data=st.data())
def test_incremental_equals_from_scratch_over_what_the_log_keeps(backend, tmp_path_factory,
                                                                 history, data):
    msgs = messages(history)
    order = data.draw(st.permutations(range(len(msgs))))
    days = data.draw(st.lists(st.integers(0, DAYS - 1), min_size=len(msgs),
                              max_size=len(msgs)))
    creations = sorted(data.draw(st.lists(st.integers(0, DAYS - 1), min_size=len(SEGMENTS),
                                          max_size=len(SEGMENTS))))
    expiring = data.draw(st.lists(st.booleans(), min_size=DAYS, max_size=DAYS))
    deleting = data.draw(st.lists(st.none() | st.none() | st.sampled_from(USERS),
                                  min_size=DAYS, max_size=DAYS))

    # The incremental side on each embedded backend (they dedupe and erase apart); the
    # reference in memory.
    storage = open_storage(StorageConfig(backend=backend, data_dir=str(
        tmp_path_factory.mktemp("removals") / "d")))

    async def both():
        h = await incremental(storage, msgs, list(order), days, creations, expiring,
                              deleting)
        expected = await outcome(await from_scratch(msgs, await kept_ids(h), h.clock.now))
        return expected, await outcome(h)

    try:
        (want_members, want_last), (members, last) = asyncio.run(both())
    finally:
        storage.close()
    assert members == want_members
    for key, kind in last.items():
        assert kind == ("Audience Entered" if key in members else "Audience Exited"), key
    assert {k for k, v in last.items() if v == "Audience Entered"} == set(members)
