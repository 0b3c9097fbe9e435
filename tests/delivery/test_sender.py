"""Deliverer: retries until sent, dead letters on reject, splits, partial answers, gate."""

from __future__ import annotations

import asyncio

import httpx
import msgspec
import pytest

from millpond.delivery.batcher import Batch, Work
from millpond.delivery.rate_limit import RateLimiter
from millpond.delivery.retry import RetryPolicy
from millpond.delivery.sender import BACKGROUND, LIVE, Deliverer, PriorityGate
from millpond.delivery.transport import Response

from .helpers import ScriptedTransport, ScriptType


def batch(*seqs: int) -> Batch:
    b = Batch("all")
    for s in seqs:
        b.items.append(Work(s, "all", {"n": s}, {"seq": s, "messageId": f"m{s}"}, 10))
    return b


def deliverer(transport, slept: list[float]) -> Deliverer:
    async def sleep(d: float) -> None:
        slept.append(d)

    return Deliverer(ScriptType(), transport, RateLimiter(1e5), RetryPolicy(rng=lambda: 0.5),
                     sleep=sleep)


def run(coro):
    return asyncio.run(coro)


def test_transient_failures_are_retried_with_backoff_then_sent():
    slept: list[float] = []
    transport = ScriptedTransport(Response(503, {}, b"down"), httpx.ConnectError("refused"),
                                  Response(429, {"Retry-After": "7"}, b"slow down"))
    d = deliverer(transport, slept)
    retried: list[str] = []
    done = run(d.deliver(batch(1, 2), on_retry=lambda w, r: retried.append(r)))
    assert [w.seq for w in done.sent] == [1, 2] and done.dead == []
    assert len(transport.sent) == 4
    assert slept[0] == 0.5 * 0.5 and slept[1] == 0.5 * 1.0  # full jitter, rng 0.5
    assert 7 <= slept[2] <= 7.7  # Retry-After honoured
    assert retried[0].startswith("HTTP 503") and "ConnectError" in retried[1]
    assert not d.state.retrying and d.state.retries == 3


def test_reject_dead_letters_every_item_with_status_and_body():
    transport = ScriptedTransport(Response(400, {}, b'{"error": "bad field"}'))
    done = run(deliverer(transport, []).deliver(batch(1, 2)))
    assert done.sent == []
    assert [(r.work.seq, r.outcome, r.status) for r in done.dead] == [(1, "dead", 400),
                                                                      (2, "dead", 400)]
    assert "bad field" in done.dead[0].reason and "bad field" in done.dead[0].response


def test_a_batch_refused_for_its_size_is_halved_and_resent():
    transport = ScriptedTransport(Response(413, {}, b"too large"))
    done = run(deliverer(transport, []).deliver(batch(1, 2, 3, 4)))
    assert [w.seq for w in done.sent] == [1, 2, 3, 4] and done.dead == []
    assert [len(s) for s in transport.sent] == [4, 2, 2]


def test_partial_answers_resend_only_the_unprocessed_items():
    answer = msgspec.json.encode({"sent": [0], "rejected": {"2": "bad time"}})
    transport = ScriptedTransport(Response(207, {}, answer))
    done = run(deliverer(transport, []).deliver(batch(1, 2, 3)))
    outcome = {r.work.seq: (r.outcome, r.reason) for r in done.results()}
    assert outcome == {1: ("sent", ""), 3: ("dead", "bad time"), 2: ("sent", "")}
    assert transport.sent[1] == [{"n": 2}]


def test_partial_without_progress_backs_off_instead_of_spinning():
    none_done = msgspec.json.encode({"sent": [], "rejected": {}})
    transport = ScriptedTransport(Response(207, {}, none_done))
    slept: list[float] = []
    done = run(deliverer(transport, slept).deliver(batch(1)))
    assert [w.seq for w in done.sent] == [1] and len(slept) == 1


def test_gate_serves_live_before_background_then_fifo():
    async def main() -> list[str]:
        gate = PriorityGate()
        order: list[str] = []
        await gate.acquire()

        async def take(name: str, prio: int) -> None:
            await gate.acquire(prio)
            order.append(name)
            gate.release()

        tasks = [asyncio.create_task(take("replay1", BACKGROUND)),
                 asyncio.create_task(take("live1", LIVE)),
                 asyncio.create_task(take("replay2", BACKGROUND)),
                 asyncio.create_task(take("live2", LIVE))]
        await asyncio.sleep(0)
        gate.release()
        await asyncio.gather(*tasks)
        return order

    assert run(main()) == ["live1", "live2", "replay1", "replay2"]


def test_a_cancelled_waiter_does_not_wedge_the_gate():
    async def main() -> bool:
        gate = PriorityGate()
        await gate.acquire()
        waiter = asyncio.create_task(gate.acquire())
        await asyncio.sleep(0)
        waiter.cancel()
        gate.release()
        await asyncio.wait_for(gate.acquire(), 1)
        return True

    assert run(main())


def test_a_request_that_cannot_be_built_dead_letters_instead_of_stopping_the_pump():
    class Broken(ScriptType):
        def build_request(self, action, items):
            raise KeyError("boom")

    d = Deliverer(Broken(), ScriptedTransport(), RateLimiter(1e5), RetryPolicy())
    done = run(d.deliver(batch(1)))
    assert done.sent == [] and done.dead[0].outcome == "dead"
    assert "KeyError" in done.dead[0].reason


@pytest.mark.serial  # retry_now must end the wait within 1 s
def test_a_long_retry_after_is_capped_and_retry_now_ends_the_wait():
    """#13 item 11: ``Retry-After: 3600`` parked a destination for 600 s even after the
    vendor recovered. The wait is capped (300 s by default) and the owner can end it."""
    transport = ScriptedTransport(Response(429, {"Retry-After": "3600"}, b"slow down"))
    d = Deliverer(ScriptType(), transport, RateLimiter(1e5), RetryPolicy(rng=lambda: 0.0))

    async def scenario() -> float:
        task = asyncio.create_task(d.deliver(batch(1)))
        while not d.state.retrying:
            await asyncio.sleep(0.01)
        wait = d.state.next_attempt_at - d.state.last_error_at
        assert not task.done()
        started = asyncio.get_running_loop().time()
        assert d.retry_now() is True
        done = await asyncio.wait_for(task, 5)
        assert [w.seq for w in done.sent] == [1]
        assert asyncio.get_running_loop().time() - started < 1.0
        assert d.retry_now() is False  # nothing waits any more
        return wait

    assert run(scenario()) == 300.0
    assert len(transport.sent) == 2 and d.state.retried_now == 1


def test_failing_longer_than_max_retry_age_dead_letters_until_a_success(caplog):
    """#13 item 5: an unreachable vendor was retried forever, saying only ``retrying``."""
    now = [0.0]

    async def sleep(d: float) -> None:
        now[0] += d

    transport = ScriptedTransport(*[Response(503, {}, b"down")] * 6)
    d = Deliverer(ScriptType(), transport, RateLimiter(1e5),
                  RetryPolicy(base=3600, cap=3600, rng=lambda: 1.0), sleep=sleep,
                  clock=lambda: now[0], name="mp")
    first = run(d.deliver(batch(1, 2)))
    assert first.sent == [] and [r.work.seq for r in first.dead] == [1, 2]
    assert first.dead[0].reason == "gave up after 4h: HTTP 503: down"
    assert first.dead[0].status == 503 and d.state.failing and len(transport.sent) == 5
    again = run(d.deliver(batch(3)))  # still failing: one attempt, then a dead letter
    assert [r.work.seq for r in again.dead] == [3] and len(transport.sent) == 6
    assert "is failing" in caplog.text and caplog.text.count("is failing") == 1
    recovered = run(d.deliver(batch(4)))  # the vendor is back (the script answers 200)
    assert [w.seq for w in recovered.sent] == [4] and recovered.dead == []
    assert not d.state.failing and not d.state.retrying
