"""Waiting on the log across processes: an append made through one connection wakes the
waiters of another, and a missed announcement costs a waiter no more than its timeout."""

from __future__ import annotations

import asyncio
import time

import nats

from millpond.storage.nats import open_log
from tests.storage.helpers import ev


def test_an_append_through_another_connection_wakes_a_waiter(settings):
    writer, reader = open_log(settings), open_log(settings)
    try:
        async def scenario() -> tuple[int, float]:
            waiter = asyncio.ensure_future(reader.wait(0, 30))
            await asyncio.sleep(0.05)
            assert not waiter.done()
            started = time.monotonic()
            await writer.append([ev("m1"), ev("m2")])
            return await waiter, time.monotonic() - started

        seq, woke_after = asyncio.run(scenario())
        assert seq == writer.last_seq() == reader.last_seq() == 2
        assert woke_after < 5  # woken by the announcement, not by the 30 s timeout
        assert [e.seq for e in asyncio.run(reader.read(0, 10))] == [1, 2]
    finally:
        writer.close()
        reader.close()


def test_a_waiter_learns_of_events_nobody_announced_at_its_timeout(settings):
    log = open_log(settings)

    async def publish_by_hand() -> int:  # straight to the stream: no announcement
        nc = await nats.connect(list(settings.servers))
        try:
            ack = await nc.jetstream().publish(f"{settings.subject}.0.track", b'{"a":1}',
                                               headers={"Millpond-Ts": "7"})
            return ack.seq
        finally:
            await nc.close()

    try:
        seq = asyncio.run(publish_by_hand())
        assert asyncio.run(log.wait(0, 0.3)) == seq == log.last_seq()
        [event] = asyncio.run(log.read(0, 10))
        assert (event.seq, event.ts_ms, event.body) == (seq, 7, b'{"a":1}')
    finally:
        log.close()
