"""How a background run (a replay) shares its destination's sender with live traffic.

Why a parameter of the sender rather than a second sender: a replay must use the same
rate budget and in-flight slot as the live pump (one budget per destination, live first),
so it delivers through the very same :class:`~millpond.delivery.sender.Deliverer`; what
differs is only how politely it asks. A :class:`BackgroundShare` takes only the budget
live traffic left (it waits while the shared token bucket is in debt), applies the run's
own ``rate`` when that is below the destination's limit (waiting in line like the
destination's :class:`~millpond.delivery.rate_limit.RateLimiter`, so that several
batches in flight do not leave as a clump), and records what it sent so the run can
report its current rate.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from millpond.delivery.rate_limit import RateLimiter, batch_size


class BackgroundShare:
    """See the module docstring. ``rate``: the run's own limit (events/s)."""

    def __init__(self, rate: float, dest_rate: float):
        self.own = RateLimiter(rate, burst_events=batch_size(1 << 30, rate)) \
            if rate < dest_rate else None
        self.sent: deque[tuple[float, int]] = deque(maxlen=64)

    async def before(self, n: int, limiter: RateLimiter) -> None:
        """Wait until ``n`` items may leave without taking live traffic's budget."""
        if self.own is not None:
            await self.own.acquire(n)
        # Live first: while the shared budget is in debt, live traffic is using it.
        while (debt := limiter.debt()) > 0:
            await asyncio.sleep(debt)

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
