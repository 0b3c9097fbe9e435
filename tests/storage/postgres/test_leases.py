"""Leases on PostgreSQL: one owner at a time, renewed by it, taken over once expired, given
back on leave; the process table ages a silent process's heartbeat."""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest

from millpond.storage.models import ProcessInfo
from millpond.storage.postgres import PgLeases, PgState


@pytest.fixture
def leases(dev_cluster):
    dsn = dev_cluster.postgres.dsn()
    schema = f"t{uuid.uuid4().hex[:12]}"
    state = PgState(dsn, schema=schema)
    yield PgLeases(state), dsn, schema
    state.close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")  # type: ignore[arg-type]


@pytest.mark.serial  # the claims must land inside a 0.6 s lease
def test_one_owner_renews_and_another_takes_over_only_after_expiry(leases):
    store, _, _ = leases
    assert store.claim(["d1", "d2"], "a", ttl=0.6) == {"d1", "d2"}
    assert store.claim(["d1", "d2", "d3"], "b", ttl=0.6) == {"d3"}  # d1, d2 are a's
    assert store.claim(["d1"], "a", ttl=0.6) == {"d1"}  # renewed
    acquired = {lease.name: lease.acquired for lease in store.leases()}
    time.sleep(0.8)  # a stops renewing
    assert store.claim(["d1", "d2"], "b", ttl=5) == {"d1", "d2"}
    after = {lease.name: lease for lease in store.leases()}
    assert after["d1"].owner == "b" and after["d1"].acquired > acquired["d1"]
    assert store.claim(["d1"], "a", ttl=5) == set()  # a comes back: still b's
    store.release(["d1"], "a")  # not a's to give: nothing changes
    assert {lease.name for lease in store.leases() if lease.owner == "b"} >= {"d1", "d2"}
    store.release(["d1"], "b")
    assert store.claim(["d1"], "a", ttl=5) == {"d1"}


def test_racing_claimers_see_one_winner(leases):
    _, dsn, schema = leases
    won: list[str] = []
    barrier = threading.Barrier(4)

    def claim(owner: str) -> None:
        state = PgState(dsn, schema=schema)
        try:
            store = PgLeases(state)
            barrier.wait(10)
            if store.claim(["x"], owner, ttl=30):
                won.append(owner)
        finally:
            state.close()

    threads = [threading.Thread(target=claim, args=(f"p{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(won) == 1, won


def test_processes_beat_age_and_leave_with_their_leases(leases):
    store, _, _ = leases
    me = ProcessInfo("h:1:aa", "worker", "h", 1, "http://127.0.0.1:1")
    store.heartbeat(me)
    store.claim(["d1", "jobs"], me.id, ttl=30)
    [row] = store.processes()
    assert (row.id, row.role, row.pid) == (me.id, "worker", 1) and row.heartbeat_age < 5
    time.sleep(0.3)
    assert store.processes()[0].heartbeat_age >= 0.3
    assert store.processes(forget_after=0.2) == []  # silent for longer than that
    store.leave(me.id)
    assert store.processes() == [] and store.leases() == []


def test_the_owner_publishes_its_status_and_answers_retry_requests_once(leases):
    store, _, _ = leases
    assert store.claim(["d1", "d2"], "a", ttl=30) == {"d1", "d2"}
    assert store.claim(["d3"], "b", ttl=30) == {"d3"}
    store.publish("a", {"d1": {"state": "retrying", "next_attempt_in": 60.0},
                        "d3": {"state": "running"}})  # d3 is b's: left alone
    found = {lease.name: lease for lease in store.leases()}
    assert found["d1"].status == {"state": "retrying", "next_attempt_in": 60.0}
    assert found["d1"].status_age is not None and 0 <= found["d1"].status_age < 5
    assert found["d2"].status is None and found["d3"].status is None

    assert store.ask_retry("d1") and store.ask_retry("d3")
    assert not store.ask_retry("nobody's")
    assert store.retry_requests("a") == {"d1"}
    assert store.retry_requests("a") == set()  # answered once
    assert store.retry_requests("b") == {"d3"}


@pytest.mark.serial  # the claims must land inside a 0.6 s lease
def test_a_new_owner_starts_with_nothing_said_or_asked(leases):
    store, _, _ = leases
    store.claim(["d1"], "a", ttl=0.6)
    store.publish("a", {"d1": {"state": "failing"}})
    assert store.ask_retry("d1")
    time.sleep(0.8)  # a stops renewing; b takes over
    assert store.claim(["d1"], "b", ttl=30) == {"d1"}
    [lease] = store.leases()
    assert (lease.owner, lease.status, lease.status_age) == ("b", None, None)
    assert store.retry_requests("b") == set()
