"""The pump end to end in one process, over each storage backend, scripted vendor."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import msgspec
import pytest

from millpond.delivery.batcher import Batcher
from millpond.delivery.evaluate import Evaluator
from millpond.delivery.ledger import Ledger
from millpond.delivery.outcomes import stamp
from millpond.delivery.pump import Pump
from millpond.delivery.rate_limit import RateLimiter
from millpond.delivery.retry import RetryPolicy
from millpond.delivery.sender import Deliverer
from millpond.delivery.slices import LogTail
from millpond.delivery.transport import Response
from millpond.destinations.base import Item
from millpond.storage import StorageConfig, open_storage
from millpond.storage.contracts import EventLog, RunStore
from millpond.storage.models import Run, RunKind, RunState

from .helpers import ScriptedTransport, ScriptType, action, new_event


class Log:
    """The log as these tests fill it (blocking appends)."""

    def __init__(self, log: EventLog):
        self.log = log

    def append_sync(self, events):
        return self.log.submit(events).result(10)


class Progress:
    """Run ``d1`` of destination ``d``, as these tests read it."""

    def __init__(self, runs: RunStore):
        self.runs = runs
        runs.create(Run("d1", "d", RunKind.LIVE, RunState.RUNNING))

    def cursor(self, run_id: str):
        return self.runs.get(run_id).cursor

    def counts(self, run_id: str):
        return self.runs.get(run_id).counts

    def checkpoint(self, run_id: str, *, cursor, counts, dead):
        self.runs.checkpoint(run_id, cursor=cursor, counts=counts,
                             dead=stamp(dead, "d", run_id))


@pytest.fixture(params=["sqlite", "memory"])
def stores(request, tmp_path):
    storage = open_storage(StorageConfig(backend=request.param, data_dir=str(tmp_path),
                                         synchronous="NORMAL"))
    yield Log(storage.log), Progress(storage.runs)
    storage.close()


def make_pump(log, progress, transport, actions, dtype=None, cursor=0):
    dtype = dtype or ScriptType()
    deliverer = Deliverer(dtype, transport, RateLimiter(1e5), RetryPolicy(base=0.001, cap=0.01))
    limits = dtype.batching
    log = log.log

    def persist(cur, counts, dead, _finished, _outcomes=None):
        progress.checkpoint("d1", cursor=cur, counts=counts, dead=dead)

    return Pump(LogTail(log, cursor, chunk=7), Evaluator(dtype, actions), deliverer,
                Batcher(limits.max_events, limits.max_bytes, limits.linger_seconds),
                Ledger(cursor), persist)


async def run_until(pump: Pump, condition, timeout: float = 10.0) -> None:
    task = asyncio.create_task(pump.run())
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition():
            assert asyncio.get_running_loop().time() < deadline, "timed out"
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def parked(progress):
    return [(d.seq, d.action, d.reason, d.status)
            for d in progress.runs.dead_letters("d", state=None)]


def test_every_event_ends_sent_skipped_or_dead_lettered(stores):
    log, progress = stores
    log.append_sync([new_event(1), new_event(2, type="identify"), new_event(3, type="group"),
                     new_event(4, timestamp="2001-01-01T00:00:00Z"),
                     new_event(5, type="identify", userId=None),
                     new_event(6, too_big=True), new_event(7)])
    actions = [
        action("tracks", 'type = "track"', {"id": {"@path": "$.messageId"},
                                            "too_big": {"@path": "$.too_big"}},
               max_event_age="30d"),
        action("identifies", 'type = "identify"', {"user": {"@path": "$.userId"}},
               required=("user",)),
    ]
    transport = ScriptedTransport()
    pump = make_pump(log, progress, transport, actions)
    asyncio.run(run_until(pump, lambda: progress.cursor("d1") == 7))
    counts = progress.counts("d1")
    assert counts == {
        ("tracks", "sent", ""): 2, ("identifies", "sent", ""): 1,
        ("", "skipped", "no action handles group"): 1,
        ("tracks", "skipped", "older than trigger window"): 1,
        ("identifies", "skipped", "missing required field user"): 1,
        ("tracks", "dead_lettered", "invalid payload"): 1,
    }
    assert [(s, a, r) for s, a, r, _ in parked(progress)] == [
        (6, "tracks", "invalid payload: too big")]
    # one request per group key (the action), in the order each group started
    assert transport.sent == [[{"id": "m1"}, {"id": "m7"}], [{"user": "u2"}]]


def test_vendor_rejections_become_dead_letters_with_status(stores):
    log, progress = stores
    log.append_sync([new_event(i) for i in range(1, 5)])
    transport = ScriptedTransport(Response(400, {}, b'{"error":"nope"}'))
    pump = make_pump(log, progress, transport, [action()])
    asyncio.run(run_until(pump, lambda: progress.cursor("d1") == 4))
    rows = parked(progress)
    assert [(r[0], r[3]) for r in rows] == [(1, 400), (2, 400), (3, 400)]
    assert progress.counts("d1") == {("all", "dead_lettered", "HTTP 400"): 3,
                                     ("all", "sent", ""): 1}


class RawScriptType(ScriptType):
    """Sends payloads as they are: the pump may hold them packed."""

    raw_payloads = True
    built: ClassVar[list[list[Item]]] = []

    def build_request(self, action, items):
        self.built.append(list(items))
        return super().build_request(action, items)


def test_packed_payloads_reach_the_vendor_unchanged_and_dead_letters_stay_objects(stores):
    log, progress = stores
    log.append_sync([new_event(i) for i in range(1, 5)])
    transport = ScriptedTransport(Response(400, {}, b'{"error":"nope"}'))
    dtype = RawScriptType()
    dtype.built.clear()  # a class attribute: this test runs once per backend
    pump = make_pump(log, progress, transport, [action()], dtype)
    asyncio.run(run_until(pump, lambda: progress.cursor("d1") == 4))
    assert transport.sent == [[{"id": f"m{i}", "user": f"u{i}"} for i in (1, 2, 3)],
                              [{"id": "m4", "user": "u4"}]]
    items = [item for batch in dtype.built for item in batch]
    assert all(isinstance(item.payload, msgspec.Raw) for item in items)
    assert [item.event for item in items] == [{"seq": i, "messageId": f"m{i}"}
                                              for i in range(1, 5)]
    rows = progress.runs.dead_letters("d", state=None)
    assert [(d.seq, d.message_id, d.payload) for d in rows] == [
        (i, f"m{i}", {"id": f"m{i}", "user": f"u{i}"}) for i in (1, 2, 3)]
    assert progress.counts("d1") == {("all", "dead_lettered", "HTTP 400"): 3,
                                     ("all", "sent", ""): 1}


def test_cursor_never_passes_an_event_whose_request_is_still_in_flight(stores):
    log, progress = stores
    log.append_sync([new_event(i, group="slow" if i == 2 else "fast") for i in range(1, 11)])
    release = asyncio.Event()

    class Blocking(ScriptedTransport):
        async def send(self, request):
            if b'"m2"' in request.body:
                await release.wait()
            return await super().send(request)

    dtype = ScriptType()
    mapping = {"id": {"@path": "$.messageId"}, "group": {"@path": "$.group"}}
    transport = Blocking()
    pump = make_pump(log, progress, transport, [action(mapping=mapping)], dtype)

    async def main():
        task = asyncio.create_task(pump.run())
        for _ in range(200):
            await asyncio.sleep(0.01)
            if len(transport.sent) >= 1:
                break
        await asyncio.sleep(0.2)
        stuck = progress.cursor("d1")
        release.set()
        for _ in range(500):
            await asyncio.sleep(0.01)
            if progress.cursor("d1") == 10:
                break
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return stuck

    stuck = asyncio.run(main())
    assert stuck in (None, 0, 1)  # event 2 was in flight: nothing above 1 may be saved
    assert progress.cursor("d1") == 10
    assert progress.counts("d1")[("all", "sent", "")] == 10


def test_per_user_order_is_kept_through_retries(stores):
    log, progress = stores
    log.append_sync([new_event(i, user=f"u{i % 3}") for i in range(1, 31)])
    transport = ScriptedTransport(*[Response(503, {}, b"")] * 5)
    pump = make_pump(log, progress, transport, [action()])
    asyncio.run(run_until(pump, lambda: progress.cursor("d1") == 30))
    delivered = [p for batch in transport.sent[5:] for p in batch]
    assert [p["id"] for p in delivered] == [f"m{i}" for i in range(1, 31)]
    assert progress.counts("d1")[("all", "retried", "")] == 5 * 3


def test_a_restarted_pump_resumes_after_the_saved_cursor(stores):
    log, progress = stores
    log.append_sync([new_event(i) for i in range(1, 6)])
    first, second = ScriptedTransport(), ScriptedTransport()

    async def main():  # one event loop per log: the log wakes waiters on its loop
        await run_until(make_pump(log, progress, first, [action()]),
                        lambda: progress.cursor("d1") == 5)
        log.append_sync([new_event(i) for i in range(6, 9)])
        pump = make_pump(log, progress, second, [action()], cursor=progress.cursor("d1"))
        await run_until(pump, lambda: progress.cursor("d1") == 8)

    asyncio.run(main())
    assert [p["id"] for b in second.sent for p in b] == ["m6", "m7", "m8"]
    assert progress.counts("d1")[("all", "sent", "")] == 8


def test_a_request_on_the_wire_when_the_pump_stops_is_counted_once_the_vendor_accepts_it(
        stores):
    """A pause or a shutdown while a request is on the wire waits for its answer: the
    vendor took it, so the final checkpoint passes it and a resume does not send it
    again (a duplicate)."""
    log, progress = stores
    log.append_sync([new_event(i) for i in range(1, 4)])
    on_the_wire, release = asyncio.Event(), asyncio.Event()

    class Slow(ScriptedTransport):
        async def send(self, request):
            on_the_wire.set()
            await release.wait()
            return await super().send(request)

    transport = Slow()
    pump = make_pump(log, progress, transport, [action()])

    async def main():
        task = asyncio.create_task(pump.run())
        await asyncio.wait_for(on_the_wire.wait(), 5)
        task.cancel()
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    sent = sum(len(batch) for batch in transport.sent)
    assert sent >= 1
    assert progress.cursor("d1") == sent
    assert progress.counts("d1")[("all", "sent", "")] == sent
