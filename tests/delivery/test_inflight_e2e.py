"""Several requests in flight (#13 item 10), end to end: ``millpond serve`` subprocess and
a webhook receiver on loopback (:mod:`tests.support.receiver`) that answers after a
random delay and fails some requests at random. Requests of different users overlap;
those of one user never do, retries included, and each user's events arrive in order.
Slow-marked."""

from __future__ import annotations

import random
import threading

import pytest

from tests.support.delivery import create_destination, send_batch, stats, track
from tests.support.receiver import Receiver
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("batch", [1, 5])
def test_per_user_order_holds_with_many_requests_in_flight_and_retries(server, batch):
    rng = random.Random(11)
    lock = threading.Lock()

    def delay() -> float:
        with lock:
            return rng.random() * 0.04

    def fail(_payloads: list[dict]) -> int | None:
        with lock:
            return 503 if rng.random() < 0.15 else None

    receiver = Receiver(delay=delay, fail=fail)
    try:
        source = server.create_source("web")
        users, per_user = 30, 40
        messages = [track(f"user{u}", n) for n in range(per_user) for u in range(users)]
        with server.admin as admin:
            dest = create_destination(admin, name="fanout", type="webhook",
                                      settings={"url": receiver.url, "batch_size": batch},
                                      rate_limit={"events_per_second": 5000,
                                                  "max_in_flight": 16})
            assert dest["rate_limit"]["max_in_flight"] == 16
            send_batch(server.url, source["write_key"], messages)
            wait_until(lambda: len({e["messageId"] for e in receiver.events()})
                       >= len(messages), timeout=60, what="every event accepted")
            wait_until(lambda: stats(admin, "fanout")["events_behind"] == 0,
                       what="the cursor to catch up")
            final = stats(admin, "fanout")
        got = [e["messageId"] for e in receiver.events()]
        assert set(got) == {m["messageId"] for m in messages}
        assert receiver.order_errors() == []
        failed = [a for a in receiver.arrivals if a.status == 503]
        assert failed, "no request was retried"
        assert receiver.peak > 4, receiver.peak  # requests of several users overlapped
        assert final["max_in_flight"] == 16 and 0 <= final["in_flight"] <= 16
        assert final["sent"] == len(messages) and final["retried"] >= len(failed)
        print(f"\nbatch {batch}: {len(receiver.arrivals)} requests, {len(failed)} failed and "
              f"retried, up to {receiver.peak} at once, per-user order kept")
    finally:
        receiver.stop()


def test_stats_show_requests_in_flight_and_the_rate_achieved(server):
    receiver = Receiver(delay=lambda: 0.05)
    try:
        source = server.create_source("web")
        with server.admin as admin:
            create_destination(admin, name="slowhook", type="webhook",
                               settings={"url": receiver.url},
                               rate_limit={"events_per_second": 200})
            send_batch(server.url, source["write_key"],
                       [track(f"user{i % 50}", i) for i in range(3000)])
            wait_until(lambda: stats(admin, "slowhook")["sent_per_second"] > 180,
                       timeout=20, what="the achieved rate to show")
            now = stats(admin, "slowhook")
        # default for a webhook: 16 in flight; 200/s at 50 ms needs 10 of them (one in
        # flight would reach 20/s)
        assert now["max_in_flight"] == 16
        assert 3 <= now["in_flight"] <= 16
        assert now["sent_per_second"] <= 200 * 1.05
    finally:
        receiver.stop()
