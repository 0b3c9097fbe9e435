"""Retry policy: full jitter within the exponential ceiling, Retry-After honoured."""

from __future__ import annotations

import random

import pytest

from millpond.delivery.retry import RetryPolicy


def test_full_jitter_stays_within_the_exponential_ceiling_and_the_cap():
    rng = random.Random(7)
    policy = RetryPolicy(base=0.5, cap=30, rng=rng.random)
    for attempt in range(40):
        ceiling = min(30, 0.5 * 2 ** attempt)
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # really spread, not a constant
        assert min(delays) < ceiling * 0.2


def test_ceiling_grows_exponentially_then_caps():
    policy = RetryPolicy(base=1, cap=60)
    assert [policy.backoff(a) for a in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert policy.backoff(10_000) == 60


@pytest.mark.parametrize("retry_after", [0, 1, 7.5, 120])
def test_retry_after_is_waited_at_least_and_jitter_is_small(retry_after):
    policy = RetryPolicy(rng=lambda: 0.999)
    delay = policy.delay(0, retry_after)
    assert retry_after <= delay <= retry_after + min(1.0, retry_after * 0.1)
    assert RetryPolicy(rng=lambda: 0.0).delay(5, retry_after) == retry_after


def test_absurd_retry_after_is_capped():
    policy = RetryPolicy(max_retry_after=600, rng=lambda: 0.0)
    assert policy.delay(0, 86_400) == 600
