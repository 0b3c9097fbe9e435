"""Holding a destination to its configured events/s and requests/s, per second.

Why reservations with debt (the model of Go's ``x/time/rate``) instead of "wait until
enough tokens": a batch may cost more tokens than the bucket holds (2,000 events against
a 1,000 events/s limit), and a bucket that must first *fill* to the batch size either
never sends it or rounds the rate down. Here a caller takes ``n`` tokens at once; the
balance may go negative and the next caller waits until it is back at zero. Over any
long window the rate is exact, whatever the batch sizes.

Why that is not enough, and what else holds the limit (#13 item 4): vendors with strict
per-second limits count every 1-second window, and a bucket that saved a full second of
budget while idle sent it on top of the steady rate: 1.2-1.5x the limit in some windows,
2x right after a start. So:

- tokens saved while *idle* are bounded to one batch (or :data:`REQUEST_SECONDS` of
  budget if more), a bucket starts empty, and :meth:`RateLimiter.restart` empties it
  (a replay that starts or resumes): no burst;
- while a caller is *waiting* its turn, time keeps counting up to
  :data:`CATCH_UP_SECONDS`: a process that was descheduled for 50 ms (a busy machine)
  owes the vendor those 50 ms of budget, and sends them, so averages stay exact;
- and a :class:`SlidingWindow` refuses any request that would put more than one
  second's budget into the trailing second, which bounds every 1-second window whatever
  the catch-up, stalls or batch boundaries;
- callers wait in line (FIFO), one at a time, then take: with several requests in
  flight, callers that each reserved a future slot and slept until it would wake
  together after a stall and leave as one clump.

:func:`batch_size` keeps a request to :data:`REQUEST_SECONDS` of budget, so that the
requests of one second divide the window finely (a 200/s destination with 100-event
batches would otherwise send 200 events at once, then nothing for a second).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial

#: Limits beyond what one process can deliver are configuration mistakes, not wishes.
MAX_EVENTS_PER_SECOND = 100_000.0
MAX_REQUESTS_PER_SECOND = 10_000.0
#: Requests on the wire at once for one destination (``rate_limit.max_in_flight``).
MAX_IN_FLIGHT = 256
#: At most this many seconds of the events budget travel in one request (unless a
#: requests-per-second limit needs bigger batches to reach the events rate): the most a
#: 1-second window can carry above the limit.
REQUEST_SECONDS = 0.02
#: While a request waits its turn, up to this much budget is kept for it: time the
#: process was descheduled is sent later rather than lost (module docstring).
CATCH_UP_SECONDS = 0.5


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
    """``rate`` tokens per second; at most ``burst`` saved up while idle, at most
    ``catch_up`` while someone waits (see the module docstring).

    Not thread-safe: a bucket belongs to one event loop. ``clock`` is injectable so tests
    can drive a simulated clock.
    """

    def __init__(self, rate: float, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic, catch_up: float | None = None):
        if rate <= 0:
            raise ValueError(f"rate must be positive; got {rate!r}")
        self.rate = float(rate)
        self.burst = max(1.0, float(burst)) if burst is not None else 1.0
        self.catch_up = max(self.burst, float(catch_up or 0.0))
        self._clock = clock
        self._tokens = 0.0
        self._stamp = clock()

    def _refill(self, now: float, waiting: bool = False) -> None:
        if now > self._stamp:
            cap = self.catch_up if waiting else self.burst
            tokens = self._tokens + (now - self._stamp) * self.rate
            # a cap stops accrual; it never takes away what is there
            self._tokens = tokens if tokens <= cap else max(self._tokens, cap)
            self._stamp = now

    def reserve(self, n: float, waiting: bool = False) -> float:
        """Take ``n`` tokens now (the balance may go negative); return seconds to wait."""
        self._refill(self._clock(), waiting)
        self._tokens -= n
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def available(self, waiting: bool = False) -> float:
        """Tokens that could be spent right now without waiting (negative while in debt).
        ``waiting``: the time since the last look was spent waiting to send."""
        self._refill(self._clock(), waiting)
        return self._tokens

    def restart(self) -> None:
        """Forget tokens saved up (debt stays): no burst after this."""
        self._refill(self._clock())
        self._tokens = min(0.0, self._tokens)


class SlidingWindow:
    """At most ``limit`` units in any trailing ``width`` seconds: the strict per-second
    bound of the module docstring. A unit bigger than the limit goes alone.

    Each unit is counted from when it was granted, or later from when it reached the
    wire (:meth:`restamp`): a request that first opens a connection, or waits for a busy
    event loop, arrives later than its grant, and a vendor counting arrivals would
    otherwise see it in the same second as requests granted a second after it."""

    def __init__(self, limit: float, width: float = 1.0,
                 clock: Callable[[], float] = time.monotonic):
        self.limit = float(limit)
        self.width = float(width)
        self._clock = clock
        #: ``[time, units]`` in grant order; a restamped time can be later than the next.
        self._sent: deque[list[float]] = deque()
        self._total = 0.0

    def _expire(self, now: float) -> None:
        edge = now - self.width + 1e-9  # a rounding remainder must not keep one in forever
        sent = self._sent
        while sent and sent[0][0] <= edge:
            self._total -= sent.popleft()[1]
        if not sent:
            self._total = 0.0

    def wait(self, n: float) -> float:
        """Seconds until ``n`` more fit (0 if they do now)."""
        now = self._clock()
        self._expire(now)
        excess = self._total + n - self.limit
        if not self._sent or excess <= 1e-9:
            return 0.0
        freed = latest = 0.0
        for t, k in self._sent:  # expiry is in order, so a unit frees once all before it did
            freed += k
            latest = max(latest, t)
            if freed >= excess - 1e-9:
                return max(1e-6, latest + self.width - now)
        return max(1e-6, latest + self.width - now)

    def add(self, n: float) -> list[float]:
        """Count ``n`` units now; the entry is what :meth:`restamp` moves."""
        now = self._clock()
        self._expire(now)
        entry = [now, float(n)]
        self._sent.append(entry)
        self._total += n
        return entry

    def restamp(self, entry: list[float]) -> None:
        """The units of ``entry`` reached the wire now: count them from now."""
        entry[0] = max(entry[0], self._clock())


class RateLimiter:
    """One destination's budget: events and, when configured, requests; each a token
    bucket and a 1-second window (see the module docstring).

    ``burst_events`` is the destination's batch size (:func:`batch_size`): the events
    bucket saves at most that much while idle (or :data:`REQUEST_SECONDS` of budget if
    more), the requests bucket one request. Replays and redrives share the limiter with
    the live pump, and its in-flight slots (see
    :class:`millpond.delivery.sender.Deliverer`), which is where live traffic gets its
    priority.
    """

    def __init__(self, events_per_second: float, requests_per_second: float | None = None,
                 *, burst_events: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep):
        eps = float(events_per_second)
        self.events = TokenBucket(eps, max(burst_events, eps * REQUEST_SECONDS), clock,
                                  catch_up=eps * CATCH_UP_SECONDS)
        # whole events: a steady 7.5/s puts 7 or 8 in a second, so the window allows 8
        self.event_window = SlidingWindow(math.ceil(eps), 1.0, clock)
        self.requests: TokenBucket | None = None
        self.request_window: SlidingWindow | None = None
        if requests_per_second:
            rps = float(requests_per_second)
            self.requests = TokenBucket(rps, 1.0, clock, catch_up=rps * CATCH_UP_SECONDS)
            self.request_window = SlidingWindow(math.ceil(rps), 1.0, clock)
        self._sleep = sleep
        self._line = asyncio.Lock()  # FIFO: callers wait their turn (module docstring)

    def reserve(self, events: int, requests: int = 1) -> float:
        """Take the buckets' tokens for a request of ``events`` items now; the seconds to
        wait before sending it (the buckets alone: :meth:`acquire` is the whole rule)."""
        delay = self.events.reserve(events)
        if self.requests is not None:
            delay = max(delay, self.requests.reserve(requests))
        return delay

    def debt(self, waiting: bool = False) -> float:
        """Seconds until both buckets are back at zero (0 when they are; a rounding
        remainder below a microsecond counts as zero, or a caller would never leave)."""
        delay = -self.events.available(waiting) / self.events.rate
        if self.requests is not None:
            delay = max(delay, -self.requests.available(waiting) / self.requests.rate)
        return delay if delay > 1e-6 else 0.0

    def _wait(self, events: int, requests: int, waiting: bool) -> float:
        delay = max(self.debt(waiting), self.event_window.wait(events))
        if self.request_window is not None:
            delay = max(delay, self.request_window.wait(requests))
        return delay

    async def acquire(self, events: int, requests: int = 1) -> Callable[[], None]:
        """Wait in line until a request of ``events`` items may go out (buckets out of
        debt, room in the 1-second windows) and take its share. Returns what to call
        when the request reaches the wire, which counts it in the windows from then
        (:meth:`SlidingWindow.restamp`)."""
        waited = 0.0
        async with self._line:
            while (delay := self._wait(events, requests, waited > 0)) > 0:
                await self._sleep(delay)
                waited += delay
            self.events.reserve(events, waited > 0)
            entry = self.event_window.add(events)
            if self.requests is not None and self.request_window is not None:
                self.requests.reserve(requests, waited > 0)
                request_entry = self.request_window.add(requests)
                request_window = self.request_window

                def on_wire() -> None:
                    self.event_window.restamp(entry)
                    request_window.restamp(request_entry)

                return on_wire
        return partial(self.event_window.restamp, entry)

    def restart(self) -> None:
        """Empty both buckets of saved tokens (a replay starts or resumes)."""
        self.events.restart()
        if self.requests is not None:
            self.requests.restart()
