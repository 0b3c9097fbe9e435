"""How a background run (a replay) shares its destination's sender with live traffic.

Why a parameter of the sender rather than a second sender: a replay must use the same
rate budget and in-flight slot as the live pump (one budget per destination, live first),
so it delivers through the very same :class:`~millpond.delivery.sender.Deliverer`; what
differs is only how politely it asks. A :class:`BackgroundShare` takes only the budget
live traffic left (it waits while the shared token bucket is in debt), applies the run's
own ``rate`` when that is below the destination's limit, and records what it sent so the
run can report its current rate.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from millpond.delivery.rate_limit import RateLimiter, TokenBucket

#: A background batch costs at most this many seconds of the destination's budget.
BATCH_SECONDS = 0.2


class BackgroundShare:
    """See the module docstring. ``rate``: the run's own limit (events/s)."""

    def __init__(self, rate: float, dest_rate: float):
        self.own = TokenBucket(rate, max(1.0, rate * BATCH_SECONDS)) if rate < dest_rate \
            else None
        self.sent: deque[tuple[float, int]] = deque(maxlen=64)

    async def before(self, n: int, limiter: RateLimiter) -> None:
        """Wait until ``n`` items may leave without taking live traffic's budget."""
        if self.own is not None:
            wait = self.own.reserve(n)
            if wait > 0:
                await asyncio.sleep(wait)
        for bucket in (limiter.events, limiter.requests):
            # Live first: while the shared budget is in debt, live traffic is using it.
            while bucket is not None and (left := bucket.available()) < 0:
                await asyncio.sleep(-left / bucket.rate)

    def after(self, n: int) -> None:
        self.sent.append((time.monotonic(), n))

    def current_rate(self, window: float = 10.0) -> float:
        """Items per second over the last ``window`` seconds of sends."""
        now = time.monotonic()
        recent = [(t, n) for t, n in list(self.sent) if now - t <= window]
        if len(recent) < 2:
            return 0.0
        span = max(recent[-1][0] - recent[0][0], 1e-6)
        return sum(n for _, n in recent[1:]) / span
