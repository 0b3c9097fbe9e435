"""Token buckets: exact over long windows on a simulated clock, debt for big batches."""

from __future__ import annotations

import asyncio

import pytest

from millpond.delivery.rate_limit import RateLimiter, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run_for(bucket: TokenBucket, clock: Clock, seconds: float, cost: float) -> float:
    """Spend as fast as the bucket allows for ``seconds``; return tokens spent."""
    end = clock.now + seconds
    spent = 0.0
    while True:
        wait = bucket.reserve(cost)
        clock.now += wait
        if clock.now > end:
            return spent
        spent += cost


@pytest.mark.parametrize("rate,cost", [(1000, 1), (1000, 100), (1000, 2000), (7.5, 1),
                                        (30_000, 2000), (100, 3)])
def test_rate_is_exact_over_a_long_window(rate, cost):
    clock = Clock()
    bucket = TokenBucket(rate, clock=clock)
    spent = run_for(bucket, clock, 3600, cost)
    assert abs(spent - rate * 3600) <= cost + 1e-6


def test_starts_empty_so_a_short_measurement_is_not_inflated():
    clock = Clock()
    bucket = TokenBucket(1000, clock=clock)
    assert bucket.reserve(1) == pytest.approx(0.001)
    clock.now += 60
    spent = run_for(bucket, clock, 60, 50)
    # idle for 60 s refilled at most one burst (1 s worth)
    assert 60_000 <= spent <= 61_000 + 50


def test_idle_time_refills_only_up_to_burst():
    clock = Clock()
    bucket = TokenBucket(10, burst=5, clock=clock)
    clock.now += 100
    assert bucket.available() == 5
    assert bucket.reserve(5) == 0
    assert bucket.reserve(1) == pytest.approx(0.1)


def test_a_batch_bigger_than_the_bucket_goes_into_debt_instead_of_waiting_forever():
    clock = Clock()
    bucket = TokenBucket(100, clock=clock)
    clock.now += 10  # full: 100 tokens
    assert bucket.reserve(300) == pytest.approx(2.0)
    clock.now += 2.0
    assert bucket.reserve(100) == pytest.approx(1.0)


def test_rejects_non_positive_rates():
    with pytest.raises(ValueError):
        TokenBucket(0)


def test_limiter_honours_the_stricter_of_events_and_requests():
    clock = Clock()
    limiter = RateLimiter(1000, 2, clock=clock)
    clock.now += 10  # both buckets full (1000 events, 2 requests)
    delays = [limiter.reserve(10) for _ in range(4)]
    assert delays[:2] == [0, 0]
    assert delays[2] == pytest.approx(0.5) and delays[3] == pytest.approx(1.0)


def test_limiter_over_simulated_minute_within_a_tenth_of_a_percent():
    clock = Clock()
    slept: list[float] = []

    async def sleep(d: float) -> None:
        slept.append(d)
        clock.now += d

    limiter = RateLimiter(1000, None, clock=clock, sleep=sleep)

    async def main() -> int:
        end = clock.now + 60
        sent = 0
        while True:
            await limiter.acquire(100)
            if clock.now > end:
                return sent
            sent += 100
            clock.now += 0.002  # request latency

    sent = asyncio.run(main())
    assert abs(sent / 60 - 1000) / 1000 < 0.002
