"""Token buckets that hold a destination to its configured events/s and requests/s.

Why reservations with debt (the model of Go's ``x/time/rate``) instead of "wait until
enough tokens": a batch may cost more tokens than the bucket holds (2,000 events against
a 1,000 events/s limit), and a bucket that must first *fill* to the batch size either
never sends it or rounds the rate down. Here a caller reserves ``n`` tokens at once; the
balance may go negative and the caller sleeps until it is back at zero. The k-th token
is therefore never spent before ``start + k / rate``, so over any long window the rate is
exact (within one burst), whatever the batch sizes.

The bucket starts empty (no initial burst, so a 60 s measurement is not inflated) and
refills up to ``burst`` tokens while idle.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

#: Limits beyond what one process can deliver are configuration mistakes, not wishes.
MAX_EVENTS_PER_SECOND = 100_000.0
MAX_REQUESTS_PER_SECOND = 10_000.0


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; see the module docstring.

    Not thread-safe: a bucket belongs to one event loop. ``clock`` is injectable so tests
    can drive a simulated clock.
    """

    def __init__(self, rate: float, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if rate <= 0:
            raise ValueError(f"rate must be positive; got {rate!r}")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else rate)
        self._clock = clock
        self._tokens = 0.0
        self._stamp = clock()

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now

    def reserve(self, n: float) -> float:
        """Take ``n`` tokens now (the balance may go negative); return seconds to wait."""
        now = self._clock()
        self._refill(now)
        self._tokens -= n
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def available(self) -> float:
        """Tokens that could be spent right now without waiting (negative while in debt)."""
        self._refill(self._clock())
        return self._tokens


class RateLimiter:
    """One destination's budget: an events bucket and, when configured, a requests bucket.

    Replays and redrives share it with the live pump; they also share the destination's
    single in-flight slot (see :class:`millpond.delivery.sender.Deliverer`), which is where
    live traffic gets its priority.
    """

    def __init__(self, events_per_second: float, requests_per_second: float | None = None,
                 *, burst_seconds: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], object] = asyncio.sleep):
        self.events = TokenBucket(events_per_second,
                                  max(1.0, events_per_second * burst_seconds), clock)
        self.requests = (TokenBucket(requests_per_second,
                                     max(1.0, requests_per_second * burst_seconds), clock)
                         if requests_per_second else None)
        self._sleep = sleep

    def reserve(self, events: int, requests: int = 1) -> float:
        """Reserve a request of ``events`` items; the seconds to wait before sending it."""
        delay = self.events.reserve(events)
        if self.requests is not None:
            delay = max(delay, self.requests.reserve(requests))
        return delay

    async def acquire(self, events: int, requests: int = 1) -> float:
        """Wait until a request of ``events`` items may go out; return the time waited."""
        delay = self.reserve(events, requests)
        if delay > 0:
            await self._sleep(delay)
        return delay
