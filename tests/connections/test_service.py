"""A destination's delivery runs: a live run from its creation, a redrive run per redrive,
and stats that add the two up (the totals users saw before runs existed)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from millpond.connections.service import PumpManager
from millpond.delivery.retry import RetryPolicy
from millpond.delivery.transport import Response
from millpond.storage import StorageConfig, open_storage
from millpond.storage.models import RunKind, RunState
from tests.delivery.helpers import ScriptedTransport, new_event

HOOK = {"name": "hook", "type": "webhook", "settings": {"url": "http://vendor.invalid/"},
        "rate_limit": {"events_per_second": 50_000}}


@pytest.fixture(params=["sqlite", "memory"])
def storage(request, tmp_path):
    opened = open_storage(StorageConfig(backend=request.param, data_dir=str(tmp_path),
                                        synchronous="NORMAL"))
    yield opened
    opened.close()


def live_totals(pumps, dest) -> Counter:
    """What the destination's live pump has counted so far (outcome counts)."""
    return Counter(pumps._live[dest.id].totals)


async def until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def test_live_and_redrive_runs_and_the_stats_that_add_them_up(storage):
    transport = ScriptedTransport(Response(400, {}, b"no"))
    pumps = PumpManager(storage.log, storage.destinations, storage.runs, transport=transport,
                        policy=RetryPolicy(base=0.001, cap=0.01))
    runs = storage.runs

    async def scenario() -> tuple[dict, dict]:
        await pumps.start()
        try:
            storage.log.submit([new_event(0)]).result()  # before the connection
            dest = await pumps.create(HOOK)
            [live] = runs.list(dest.id)
            assert (live.kind, live.state, live.cursor) == (RunKind.LIVE, RunState.RUNNING,
                                                            dest.connected_seq)
            storage.log.submit([new_event(i) for i in range(1, 4)]).result()
            await until(lambda: runs.get(live.id).cursor == storage.log.last_seq())
            # The stored cursor can lead the pump's in-memory totals by a callback (the
            # checkpoint is written first), so wait for all three outcomes to be counted.
            await until(lambda: sum(live_totals(pumps, dest).values()) == 3)
            first = await pumps.stats(dest)
            answer = await pumps.redrive("hook", None)
            assert answer["redriving"] == 1  # the first request was refused, the rest sent
            await until(lambda: runs.count_dead_letters(dest.id) == 0
                        and not runs.list(dest.id, kinds=[RunKind.REDRIVE],
                                          states=[RunState.RUNNING]))
            [redrive] = runs.list(dest.id, kinds=[RunKind.REDRIVE])
            assert redrive.state == RunState.COMPLETED and redrive.spec == {"ids": answer["ids"]}
            disabled = await pumps.set_enabled("hook", False)
            assert runs.get(live.id).state == RunState.PAUSED
            return first, await pumps.stats(disabled)
        finally:
            await pumps.stop()

    first, disabled = asyncio.run(scenario())
    dest = storage.destinations.get("hook")
    live = runs.list(dest.id, kinds=[RunKind.LIVE])[0]
    redrive = runs.list(dest.id, kinds=[RunKind.REDRIVE])[0]
    assert (first["sent"], first["dead_lettered"], first["dead_letters_waiting"]) == (2, 1, 1)
    assert live.counts == {("Send event", "dead_lettered", "HTTP 400"): 1,
                           ("Send event", "sent", ""): 2}
    # The redriven event is counted once, in its final outcome: the redrive counts it
    # sent and its dead letter redriven (#13 item 13), which stats subtract from
    # dead_lettered; no stored counter goes down (/metrics exports them as counters).
    assert redrive.counts == {("Send event", "sent", ""): 1,
                              ("Send event", "redriven", "HTTP 400"): 1}
    assert (disabled["state"], disabled["sent"], disabled["dead_lettered"]) == (
        "disabled", 3, 0)
    assert disabled["dead_letters_waiting"] == 0 and disabled["cursor"] == live.cursor
    [letter, *_] = runs.dead_letters(dest.id, state=None)
    assert letter.run_id == live.id and letter.state == "redriven"


def test_deleting_a_destination_cancels_its_runs_and_keeps_them(storage):
    pumps = PumpManager(storage.log, storage.destinations, storage.runs,
                        transport=ScriptedTransport())

    async def scenario():
        await pumps.start()
        try:
            dest = await pumps.create({**HOOK, "enabled": False})
            assert storage.runs.list(dest.id)[0].state == RunState.PAUSED
            await pumps.delete("hook")
            return dest
        finally:
            await pumps.stop()

    dest = asyncio.run(scenario())
    [live] = storage.runs.list(dest.id)
    assert live.state == RunState.CANCELLED and live.error == "destination deleted"


class Outage:
    """A vendor that answers 503 until ``up`` is set."""

    def __init__(self) -> None:
        self.up = False
        self.sent = 0

    async def send(self, request):
        self.sent += 1
        return Response(200, {}, b"ok") if self.up else Response(503, {}, b"down")

    async def aclose(self) -> None:
        pass


def test_retries_are_counted_while_they_happen(storage):
    """#13 item 5: ``retried`` stayed 0 until the vendor recovered."""
    vendor = Outage()
    pumps = PumpManager(storage.log, storage.destinations, storage.runs, transport=vendor,
                        policy=RetryPolicy(base=0.05, cap=0.05))

    async def scenario() -> tuple[dict, dict, dict]:
        await pumps.start()
        try:
            dest = await pumps.create(HOOK)
            storage.log.submit([new_event(1)]).result()
            await until(lambda: vendor.sent >= 4)
            await asyncio.sleep(0.2)
            during = await pumps.stats(dest)
            [live] = storage.runs.list(dest.id, kinds=[RunKind.LIVE])
            vendor.up = True
            await until(lambda: storage.runs.get(live.id).counts.get(
                ("Send event", "sent", "")) == 1)
            return during, storage.runs.get(live.id).counts, await pumps.stats(dest)
        finally:
            await pumps.stop()

    during, counts, after = asyncio.run(scenario())
    assert during["state"] == "retrying" and during["sent"] == 0
    assert during["retried"] >= 3 and during["actions"]["Send event"]["retried"] >= 3
    assert counts[("Send event", "retried", "")] >= during["retried"]
    assert after["sent"] == 1 and after["retried"] == counts[("Send event", "retried", "")]
