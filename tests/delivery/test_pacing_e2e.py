"""Pacing per 1-second window (#13 item 4), end to end: ``millpond serve`` subprocess, a
webhook receiver on loopback that records when the kernel received each request and how
many events it carried (:mod:`tests.support.receiver`). A vendor with a strict per-second
limit counts every window, so the busiest window (not the average) must stay within 5%
of the limit, also in the first second after a start and after a resume, while the
average stays at the limit. Slow-marked."""

from __future__ import annotations

import time

import pytest

from tests.support.delivery import create_destination, send_batch, track
from tests.support.receiver import Receiver
from tests.support.wait import wait_until

# serial: it counts requests per 1-second window; `make test` runs it alone (a starved
# server is not a pacing bug; the last CI failure of this module was one).
pytestmark = [pytest.mark.slow, pytest.mark.serial]

RATE = 200
#: A 1-second window may carry at most this much above the limit.
TOLERANCE = 1.05
#: How close the average must come to the limit here. The limiter's own average is
#: exact to 0.5% under simulated stalls (test_rate_limit.py); on a shared 2-core test
#: machine a server process that gets a third of a core cannot always send 200 requests
#: a second, and that is not pacing.
AVERAGE = 0.05


@pytest.fixture
def receiver(request):
    """A receiver answering after ``request.param`` seconds (0 unless parametrized)."""
    latency = getattr(request, "param", 0.0)
    r = Receiver(delay=lambda: latency)
    yield r
    r.stop()


def arrivals(receiver: Receiver, since: float = 0.0) -> list[tuple[float, int]]:
    """``(arrival time, events carried)`` of every request the receiver accepted."""
    return [(at, len(payloads)) for at, payloads in receiver.accepted() if at >= since]


def hook(receiver: Receiver, batch: int) -> dict:
    return {"url": receiver.url, "batch_size": batch}


def busiest_window(sends: list[tuple[float, int]]) -> int:
    """The most events that arrived in any half-open 1-second window."""
    best = total = 0
    lo = 0
    for t, n in sends:
        total += n
        while sends[lo][0] <= t - 1.0:
            total -= sends[lo][1]
            lo += 1
        best = max(best, total)
    return best


def first_second(sends: list[tuple[float, int]]) -> int:
    start = sends[0][0]
    return sum(n for t, n in sends if t < start + 1.0)


def average(sends: list[tuple[float, int]]) -> float:
    """Events per second between the first and the last request (the last one's events
    belong after the span)."""
    return sum(n for _, n in sends[:-1]) / (sends[-1][0] - sends[0][0])


@pytest.mark.parametrize("batch,receiver", [(1, 0.0), (100, 0.0), (1, 0.05)],
                         indirect=["receiver"], ids=["batch1", "batch100", "batch1-50ms"])
def test_live_destination_busiest_window_within_five_percent(server, receiver, batch):
    """With a 50 ms receiver, 200/s takes ~10 of the webhook's 16 requests in flight: the
    limit holds across them too."""
    source = server.create_source("web")
    with server.admin as admin:
        create_destination(admin, name="paced", type="webhook",
                           settings=hook(receiver, batch),
                           rate_limit={"events_per_second": RATE})
    time.sleep(1.5)  # idle: a bucket that saves a second of budget would burst now
    total = 1600
    send_batch(server.url, source["write_key"],
               [track(f"user{i % 13}", i) for i in range(total)])
    wait_until(lambda: len(receiver.events()) >= total, timeout=30, what="delivery")
    sends = arrivals(receiver)
    assert sum(n for _, n in sends) == total
    busiest, first = busiest_window(sends), first_second(sends)
    print(f"\nlive batch {batch}: busiest 1 s window {busiest}, first second {first}, "
          f"average {average(sends):.1f}/s (limit {RATE}/s)")
    assert busiest <= RATE * TOLERANCE
    assert first <= RATE * TOLERANCE
    assert average(sends) == pytest.approx(RATE, rel=AVERAGE)


def test_replay_busiest_window_within_five_percent_also_after_start_and_resume(
        server, receiver):
    source = server.create_source("web")
    total = 2000
    send_batch(server.url, source["write_key"],
               [track(f"user{i % 13}", i) for i in range(total)])
    with server.admin as admin:
        create_destination(admin, name="replayed", type="webhook",
                           settings=hook(receiver, 100),
                           rate_limit={"events_per_second": RATE})
        time.sleep(1.5)  # the destination's budget sits idle before the replay starts
        r = admin.post("/api/replays", json={"destination": "replayed"})
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
        wait_until(lambda: len(receiver.events()) >= 700, timeout=30, what="replay progress")
        r = admin.post(f"/api/replays/{rid}/pause")
        assert r.status_code == 200 and r.json()["state"] == "paused", r.text
        before = arrivals(receiver)
        time.sleep(2.0)  # paused: again, no saving up
        resumed_at = time.time()
        r = admin.post(f"/api/replays/{rid}/resume")
        assert r.status_code == 200, r.text
        wait_until(lambda: admin.get(f"/api/replays/{rid}").json()["state"] == "completed",
                   timeout=60, what="replay to complete")
    after = arrivals(receiver, since=resumed_at)
    assert len({p["messageId"] for p in receiver.events()}) == total
    busiest = max(busiest_window(before), busiest_window(after))
    start, resume = first_second(before), first_second(after)
    print(f"\nreplay: busiest 1 s window {busiest}, first second after start {start}, "
          f"after resume {resume}, averages {average(before):.1f}/s and "
          f"{average(after):.1f}/s (limit {RATE}/s)")
    assert busiest <= RATE * TOLERANCE
    assert start <= RATE * TOLERANCE and resume <= RATE * TOLERANCE
    assert average(before) == pytest.approx(RATE, rel=AVERAGE)
    assert average(after) == pytest.approx(RATE, rel=AVERAGE)
