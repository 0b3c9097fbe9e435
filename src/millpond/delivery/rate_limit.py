"""Token buckets that hold a destination to its configured events/s and requests/s.

Why reservations with debt (the model of Go's ``x/time/rate``) instead of "wait until
enough tokens": a batch may cost more tokens than the bucket holds (2,000 events against
a 1,000 events/s limit), and a bucket that must first *fill* to the batch size either
never sends it or rounds the rate down. Here a caller reserves ``n`` tokens at once; the
balance may go negative and the caller sleeps until it is back at zero. The k-th token
is therefore never spent before ``start + k / rate``, so over any long window the rate is
exact, whatever the batch sizes.

Why the burst is one batch, not a second of budget: vendors with strict per-second
limits count every 1-second window, and tokens saved up while idle are sent on top of
the steady rate. A bucket that may save a full second carried 1.2-1.5x the limit in
some windows and 2x right after a start. Saving at most what one batch needs still
absorbs scheduling jitter (a request that leaves a millisecond late does not lose that
millisecond of budget for good, so averages stay exact), while a 1-second window holds
at most the limit plus one batch. :func:`batch_size` keeps that batch to
:data:`REQUEST_SECONDS` of budget, so the overshoot stays within a few percent.
A bucket starts empty and :meth:`RateLimiter.restart` empties it again (a replay that
starts or resumes), so neither begins with a burst.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

#: Limits beyond what one process can deliver are configuration mistakes, not wishes.
MAX_EVENTS_PER_SECOND = 100_000.0
MAX_REQUESTS_PER_SECOND = 10_000.0
#: At most this many seconds of the events budget travel in one request (unless a
#: requests-per-second limit needs bigger batches to reach the events rate): the most a
#: 1-second window can carry above the limit.
REQUEST_SECONDS = 0.025


def batch_size(max_events: int, events_per_second: float,
               requests_per_second: float | None = None) -> int:
    """Items per request for a destination: the type's ``max_events``, but no more than
    :data:`REQUEST_SECONDS` of the events budget (see the module docstring), and no
    fewer than the requests limit needs to reach the events rate."""
    n = events_per_second * REQUEST_SECONDS
    if requests_per_second:
        n = max(n, math.ceil(events_per_second / requests_per_second))
    return max(1, min(int(max_events), int(n)))


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
        self.burst = max(1.0, float(burst)) if burst is not None else 1.0
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

    def restart(self) -> None:
        """Forget tokens saved up while idle (debt stays): no burst after this."""
        self._refill(self._clock())
        self._tokens = min(0.0, self._tokens)


class RateLimiter:
    """One destination's budget: an events bucket and, when configured, a requests bucket.

    ``burst_events`` is the destination's batch size (:func:`batch_size`): the events
    bucket saves at most that much, the requests bucket one request. Replays and
    redrives share the limiter with the live pump, and its in-flight slots (see
    :class:`millpond.delivery.sender.Deliverer`), which is where live traffic gets its
    priority.
    """

    def __init__(self, events_per_second: float, requests_per_second: float | None = None,
                 *, burst_events: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], object] = asyncio.sleep):
        self.events = TokenBucket(events_per_second, burst_events, clock)
        self.requests = (TokenBucket(requests_per_second, 1.0, clock)
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

    def restart(self) -> None:
        """Empty both buckets of saved tokens (a replay starts or resumes)."""
        self.events.restart()
        if self.requests is not None:
            self.requests.restart()
