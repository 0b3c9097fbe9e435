"""The deletion job's statuses, per store and per destination, never one verdict: a
vendor that fails transiently is retried until done (its attempts counted), one that
refuses the credentials is ``failed`` with the vendor's answer and not retried, a type
without a deletion API is ``not_supported`` with why, and the stores are done whatever
the destinations say. Real vendor fakes over HTTP; the memory backend."""

from __future__ import annotations

import asyncio
import logging
import time

from millpond.delivery.transport import HttpTransport
from millpond.regulations.blocklist import Blocklist
from millpond.regulations.forward import Forwarder
from millpond.regulations.job import Retries
from millpond.regulations.service import RegulationService, digest
from millpond.storage.memory import MemoryStorage
from millpond.storage.models import Destination, NewEvent, RegulationType


def _destination(n: int, kind: str, settings: dict) -> Destination:
    return Destination(f"dst_{n}", f"{kind}-{n}", kind, settings,
                       {"events_per_second": 100.0}, [], True, time.time(), 0)


def _event(i: int, user: str) -> NewEvent:
    body = f'{{"type":"track","userId":"{user}","event":"E","messageId":"m{i}"}}'.encode()
    return NewEvent("src", "track", f"m{i}", "E", user, None, 1000 + i, 1000 + i, body)


def test_each_destination_has_its_own_status_and_retries(vendor):
    cio, amp, hook = vendor("customerio"), vendor("amplitude"), vendor("webhook")
    storage = MemoryStorage()
    storage.destinations.create(_destination(1, "customerio", cio.destination_settings()))
    storage.destinations.create(_destination(
        2, "amplitude", {**amp.destination_settings(), "secret_key": "wrong-secret"}))
    storage.destinations.create(_destination(3, "webhook", hook.destination_settings()))
    storage.log.submit([_event(i, "ann" if i % 2 else "bob") for i in range(10)]).result(5)
    cio.fail_next(2, 503)  # twice unavailable, then it answers

    async def run() -> tuple:
        transport = HttpTransport(timeout=5)
        service = RegulationService(storage, Blocklist(), Forwarder(transport),
                                    retries=Retries(attempts=4, base_seconds=0.01,
                                                    follower_wait_seconds=0.1))
        reg = await service.create(RegulationType.DELETE, ["ann"], [], "test")
        await service.wait_idle()
        await transport.aclose()
        return service.get(reg.id), service

    done, service = asyncio.run(run())
    assert done.state == "finished"
    assert {k: (s.state, s.removed) for k, s in done.stores.items()
            if k in ("events", "profiles")} == {"events": ("done", 5), "profiles": ("done", 0)}
    cio_status, amp_status, hook_status = (done.destinations[f"dst_{n}"] for n in (1, 2, 3))
    assert (cio_status.state, cio_status.attempts, cio_status.removed) == ("done", 3, 1)
    assert cio.deleted == ["ann"]
    assert (amp_status.state, amp_status.attempts) == ("failed", 1)  # 401: not retried
    assert "HTTP 401" in (amp_status.reason or "") and amp.deleted == []
    assert hook_status.state == "not_supported"
    assert "no deletion API" in (hook_status.reason or "")
    assert [e.seq for e in asyncio.run(storage.log.read(0, 100))] == [1, 3, 5, 7, 9]  # bob's
    # finished: the record keeps digests, and still says which id it was about
    assert done.redacted and "ann" not in done.ids
    assert done.ids == [digest(done.redacted, "ann")]
    assert service.blocklist.blocked("ann", None, 10) == "deleted"
    assert service.blocklist.blocked("ann", None, 11) is None  # later events are kept


def test_a_deletion_is_run_once_though_a_read_taken_before_it_finished_lists_it(vendor):
    """``follow`` (a cluster's processes) starts the deletions it reads as running; one
    read just before a job here finished must not start it again (the vendor asked
    twice)."""
    cio = vendor("customerio")
    storage = MemoryStorage()
    storage.destinations.create(_destination(1, "customerio", cio.destination_settings()))
    storage.log.submit([_event(i, "ann") for i in range(3)]).result(5)

    async def run() -> None:
        transport = HttpTransport(timeout=5)
        service = RegulationService(storage, Blocklist(), Forwarder(transport),
                                    retries=Retries(base_seconds=0.01,
                                                    follower_wait_seconds=0.1))
        reg = await service.create(RegulationType.DELETE, ["ann"], [], "test")
        stale = storage.regulations.get(reg.id)
        assert stale.state == "running"
        await service.wait_idle()
        service.refresh = lambda: [stale]  # type: ignore[method-assign]
        follow = asyncio.create_task(service.follow(interval=0.01))
        await asyncio.sleep(0.2)
        follow.cancel()
        await asyncio.gather(follow, return_exceptions=True)
        await service.wait_idle()
        await transport.aclose()

    asyncio.run(run())
    assert cio.deleted == ["ann"]


def test_following_the_regulations_logs_an_outage_once_and_its_end(caplog):
    caplog.set_level(logging.INFO, "millpond.regulations")
    storage = MemoryStorage()
    service = RegulationService(storage, Blocklist(), Forwarder(HttpTransport(timeout=1)))
    real, calls = service.refresh, []

    def flaky() -> list:
        calls.append(1)
        if len(calls) <= 3:
            raise OSError("the state database is unreachable")
        return real()

    service.refresh = flaky  # type: ignore[method-assign]

    async def run() -> None:
        follow = asyncio.create_task(service.follow(interval=0.01))
        while len(calls) < 5:
            await asyncio.sleep(0.01)
        follow.cancel()
        await asyncio.gather(follow, return_exceptions=True)

    asyncio.run(run())
    lines = [r.getMessage() for r in caplog.records if r.name == "millpond.regulations"]
    assert lines == ["could not read the regulations; retrying every 0 s",
                     "the regulations are read again"]


def test_the_finished_line_names_each_destination_with_its_count_or_reason():
    from millpond.regulations.job import summary
    from millpond.storage.models import Regulation, RegulationType, StepStatus

    reg = Regulation("reg_1", RegulationType.DELETE, ["ada"], [], ["ada"], "me", 0.0,
                     stores={"events": StepStatus("done", removed=9)},
                     destinations={
                         "dst_a": StepStatus("done", removed=17),
                         "dst_b": StepStatus("not_supported", reason="no deletion API"),
                         "dst_gone": StepStatus("failed", reason="HTTP 500", attempts=3)})
    assert summary(reg, {"dst_a": "wh", "dst_b": "hook"}) == (
        "events done (9), destination wh done (17), destination hook not_supported"
        " (no deletion API), destination dst_gone failed (HTTP 500)")
