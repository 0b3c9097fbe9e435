"""Sending batches to one destination: rate budget, in-flight slots, retries.

Why the pump, not the destination, owns this (STYLE.md "two kinds of failure"): a
destination type only builds requests and classifies answers; here those answers become
actions. ``Retry`` waits (full-jitter backoff or the vendor's ``Retry-After``) and tries
the same request again, forever, until the pump is stopped; ``Reject`` dead-letters the
items (halving first when the vendor refused only the batch's size); ``Partial`` resends
what the vendor did not process. Only then is the batch finished, and only then may a
later batch of the same users leave (:mod:`millpond.delivery.inflight`), which is what
keeps per-user order.

One :class:`Deliverer` per destination is shared by its live pump, redrives and
replays: they share its rate budget and its ``max_in_flight`` request slots, and a free
slot goes to the live pump first (:class:`PriorityGate`). It also measures the rate it
achieves (:class:`RateMeter`), for stats.

It is also where a destination's health changes, so it says so in the log, once per
change: the first failed attempt ("retrying", with the vendor's answer), the first
success after failures ("recovered", how long and how many attempts), and in between
a reminder at most every :data:`STILL_FAILING_EVERY` seconds, never a line per attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from millpond.delivery.batcher import Batch, Work
from millpond.delivery.rate_limit import RateLimiter
from millpond.delivery.retry import RetryPolicy
from millpond.delivery.transport import ON_WIRE, Response, Transport
from millpond.destinations.base import (
    DestinationType,
    Item,
    OutboundRequest,
    Partial,
    Reject,
    Retry,
    Sent,
    body_text,
)
from millpond.timeutil import compact_duration, human_duration

if TYPE_CHECKING:
    from millpond.delivery.screen import Screen
    from millpond.delivery.share import BackgroundShare

log = logging.getLogger("millpond.delivery")

LIVE = 0
BACKGROUND = 1
#: How much of a vendor's answer a dead letter keeps.
RESPONSE_EXCERPT = 2000
#: How much of the failure a log line quotes.
LOG_EXCERPT = 300
#: While a destination keeps failing, a reminder in the log at most this often (seconds).
STILL_FAILING_EVERY = 300.0


@dataclass(slots=True)
class Result:
    """How one item ended: ``sent``, ``skipped`` (with reason) or ``dead`` (with reason
    and the vendor's answer)."""

    work: Work
    outcome: str
    reason: str = ""
    status: int | None = None
    response: str | None = None


@dataclass(slots=True)
class Delivered:
    """How a batch ended: the items sent, the ones the destination skipped and the dead
    ones, each with why.

    Why not one :class:`Result` per item: nearly every item is simply sent, and making
    (then reading) an object per item of a 1,000-item batch cost the pump more than
    building the request."""

    sent: list[Work] = field(default_factory=list)
    dead: list[Result] = field(default_factory=list)
    #: Left out by the destination on purpose (``Partial.skipped``: a loader's screen).
    skipped: list[Result] = field(default_factory=list)

    def results(self) -> list[Result]:
        """One :class:`Result` per item, the sent ones first."""
        return [Result(w, "sent") for w in self.sent] + self.skipped + self.dead


class PriorityGate:
    """A lock with ``capacity`` holders whose waiters are served by priority, then
    arrival (FIFO): the destination's in-flight slots."""

    def __init__(self, capacity: int = 1) -> None:
        self.capacity = max(1, int(capacity))
        #: Slots held right now (requests in flight).
        self.held = 0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    async def acquire(self, priority: int = LIVE) -> None:
        if self.held < self.capacity and not self._waiters:
            self.held += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (priority, next(self._order), fut)
        heapq.heappush(self._waiters, entry)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # handed a slot just as we were cancelled: pass it on
            else:
                self._waiters.remove(entry)
                heapq.heapify(self._waiters)
            raise

    def release(self) -> None:
        while self._waiters:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)  # the slot passes directly: ``held`` stays
                return
        self.held -= 1


class RateMeter:
    """Items per second over the last ``window`` seconds, counted per whole second.

    Why per second and not per request: a fast destination finishes thousands of requests
    a second, and stats (read from another thread) must copy something small."""

    def __init__(self, window: int = 10, clock: Callable[[], float] = time.monotonic):
        self.window = window
        self._clock = clock
        self._started = clock()
        self._seconds: deque[tuple[int, int]] = deque()

    def add(self, n: int) -> None:
        if not n:
            return
        second = int(self._clock())
        seconds = self._seconds
        if seconds and seconds[-1][0] == second:
            seconds[-1] = (second, seconds[-1][1] + n)
        else:
            seconds.append((second, n))
            while seconds[0][0] <= second - self.window:
                seconds.popleft()

    def rate(self) -> float:
        """Items per second over the last whole seconds of the window (0 when idle): the
        seconds wholly after the meter started and before the current one."""
        current = int(self._clock())
        first = max(current - self.window + 1, int(self._started) + 1)
        if current - first < 1:
            return 0.0
        total = sum(n for s, n in list(self._seconds) if first <= s < current)
        return total / (current - first)


@dataclass(slots=True)
class Holding:
    """Items a delivery holds for a next attempt after a failure: what the destination's
    "retrying now" list shows. They live only here, in the sender's memory, until the
    batch ends (sent or dead-lettered, then counted and recorded like any other) or the
    run stops (a restart sends them again from the log)."""

    #: Which run: ``live`` (the live pump and redrives) or a replay's id.
    run: str
    works: list[Work]
    #: Failed attempts of these items so far.
    attempts: int
    #: When their first attempt failed, and when the next one is due (Unix seconds).
    failing_since: float
    next_attempt_at: float
    #: The vendor's last answer: the failure as classified, its status, the body's start.
    reason: str = ""
    status: int | None = None
    response: str | None = None


@dataclass(slots=True)
class DeliveryState:
    """What the destination's sender is doing, for stats: the last failure and when the
    next attempt is due while retrying."""

    retrying: bool = False
    last_error: str | None = None
    last_error_at: float | None = None
    next_attempt_at: float | None = None
    requests: int = 0
    retries: int = 0
    #: How many times the owner asked to retry now (``retry-now``).
    retried_now: int = 0
    #: The current failure episode (while ``retrying``): when it began, failed attempts
    #: so far, and when the log last said so.
    failing_since: float | None = None
    failed_attempts: int = 0
    reported_at: float | None = None
    #: Failing longer than ``max_retry_age``: items are dead-lettered, not retried.
    failing: bool = False


#: Seconds a stopping delivery waits for the answer to a request already on the wire.
STOP_WAIT_SECONDS = 5.0


class _AcceptedThenStopped(asyncio.CancelledError):
    """Inside :meth:`Deliverer._send_once`: stopped, but the vendor accepted the request."""


class StoppedAfterSending(asyncio.CancelledError):
    """The delivery was cancelled (a pause, a shutdown) while a request was on the wire,
    and the vendor accepted it: ``sent`` are the works it (and any earlier part of the
    batch) carried, for the caller to record before it stops. A cancellation still, so
    task groups and supervisors treat it as one."""

    def __init__(self, sent: list[Work]):
        super().__init__()
        self.sent = sent


class Deliverer:
    """Delivers batches for one destination; see the module docstring."""

    def __init__(self, dtype: DestinationType, transport: Transport, limiter: RateLimiter,
                 policy: RetryPolicy, *,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
                 name: str = "", clock: Callable[[], float] = time.time,
                 max_in_flight: int = 1, screen: Screen | None = None):
        #: The destination's name, for the log.
        self.name = name
        #: Whose events no run of this destination may send (regulations), or None.
        self.screen = screen
        self._clock = clock
        self.dtype = dtype
        self.transport = transport
        self.limiter = limiter
        self.policy = policy
        #: ``max_in_flight`` request slots, live traffic first. A slot is taken before
        #: the rate limiter's turn (so that no more than the slots wait granted), which
        #: is why stats read :attr:`on_wire`, not the slots held.
        self.gate = PriorityGate(max_in_flight)
        #: Requests sent and not yet answered (stats' ``in_flight``): at the rate limit,
        #: most slots hold requests waiting their turn, not requests on the wire.
        self.on_wire = 0
        self.state = DeliveryState()
        #: Items sent per second, recently (stats).
        self.meter = RateMeter()
        self._sleep = sleep
        #: Set by :meth:`retry_now` to end the current waits (made in the running loop).
        self._wake: asyncio.Event | None = None
        #: What is waiting for a next attempt now, per failing request (see ``Holding``).
        self.holding: dict[int, Holding] = {}

    async def deliver(self, batch: Batch, *, priority: int = LIVE,
                      on_retry: Callable[[list[Work], str], None] | None = None,
                      share: BackgroundShare | None = None, run: str = "live") -> Delivered:
        """Send ``batch`` until every item is sent or dead; retries until cancelled.
        ``share``: a background run's manners (see :mod:`millpond.delivery.share`);
        ``run``: whose items these are, for :attr:`holding`."""
        done = Delivered()
        if share is not None:
            await share.before(len(batch), self.limiter)
        await self._deliver(batch.items, priority, on_retry, done, run)
        self.meter.add(len(done.sent))
        if share is not None:
            share.after(len(batch))
        return done

    async def _deliver(self, works: list[Work], priority: int,
                       on_retry: Callable[[list[Work], str], None] | None,
                       done: Delivered, run: str = "live") -> None:
        attempt = 0
        #: Set once an attempt failed: these works wait in :attr:`holding` until they end.
        hold: Holding | None = None
        try:
            while works:
                try:
                    # A raw_payloads type reads only .payload and .event, which works have
                    # too: they go as they are, without an Item per work.
                    items = cast("list[Item]", works) if self.dtype.raw_payloads else \
                        [Item(w.payload, w.event) for w in works]
                    request = self.dtype.build_request(works[0].action, items)
                except Exception as exc:  # noqa: BLE001 - a type bug parks items, not the pump
                    reason = f"could not build the request: {type(exc).__name__}: {exc}"
                    done.dead.extend(Result(w, "dead", reason) for w in works)
                    return
                try:
                    response, outcome = await self._send_once(request, len(works), priority)
                except _AcceptedThenStopped:
                    raise StoppedAfterSending(done.sent + works) from None
                if isinstance(outcome, Sent):
                    self._ok()
                    done.sent.extend(works)
                    return
                status = response.status if response is not None else None
                excerpt = _excerpt(response)
                if isinstance(outcome, Reject):
                    self._ok()
                    if hold is not None:  # no longer waiting: the halves hold their own
                        del self.holding[id(hold)]
                        hold = None
                    if outcome.split and len(works) > 1:
                        half = len(works) // 2
                        await self._deliver(works[:half], priority, on_retry, done, run)
                        await self._deliver(works[half:], priority, on_retry, done, run)
                        return
                    done.dead.extend(Result(w, "dead", outcome.reason, status, excerpt)
                                     for w in works)
                    return
                if isinstance(outcome, Partial):
                    pending = outcome.pending(len(works))
                    for i, work in enumerate(works):
                        if i in outcome.sent_indexes:
                            done.sent.append(work)
                        elif i in outcome.rejected:
                            done.dead.append(Result(work, "dead", outcome.rejected[i], status,
                                                    excerpt))
                        elif i in outcome.skipped:
                            done.skipped.append(Result(work, "skipped", outcome.skipped[i]))
                    progressed = len(pending) < len(works)
                    works = [works[i] for i in pending]
                    if hold is not None:
                        hold.works = works
                    if progressed:
                        self._ok()
                        continue
                    outcome = Retry(f"HTTP {status}: vendor processed none of the batch", None)
                reason = outcome.reason if isinstance(outcome, Retry) else str(outcome)
                retry_after = outcome.retry_after if isinstance(outcome, Retry) else None
                delay = self.policy.delay(attempt, retry_after)
                attempt += 1
                self._failed(reason, delay, status)
                if self._given_up(reason):
                    gave = (f"gave up after {compact_duration(self.policy.max_retry_age)}: "
                            f"{reason}")
                    done.dead.extend(Result(w, "dead", gave, status, excerpt) for w in works)
                    return
                now = self._clock()
                if hold is None:
                    hold = Holding(run, works, 0, now, now)
                    self.holding[id(hold)] = hold
                hold.works, hold.attempts, hold.next_attempt_at = works, attempt, now + delay
                hold.reason, hold.status, hold.response = reason, status, excerpt
                if on_retry is not None:
                    on_retry(works, reason)
                await self._wait(delay)
        finally:
            if hold is not None:
                del self.holding[id(hold)]

    def _given_up(self, reason: str) -> bool:
        """Whether the destination has failed continuously for longer than its
        ``max_retry_age``: then items are dead-lettered instead of retried (and the
        destination says it is ``failing``) until an attempt succeeds again."""
        st = self.state
        now = self._clock()
        failing_for = now - (st.failing_since if st.failing_since is not None else now)
        if failing_for < self.policy.max_retry_age:
            return False
        st.next_attempt_at = None
        if not st.failing:
            st.failing = True
            log.error("destination %s is failing: no success for %s; its events are "
                      "dead-lettered until it succeeds again (last answer: %s)", self.name,
                      human_duration(failing_for), _one_line(reason, LOG_EXCERPT),
                      extra={"destination": self.name, "phase": "failing",
                             "failing_seconds": round(failing_for, 3),
                             "error": _one_line(reason, LOG_EXCERPT)})
        return True

    async def _wait(self, delay: float) -> None:
        """Sleep ``delay`` seconds before the next attempt, or until :meth:`retry_now`."""
        wake = self._wake
        if wake is None:
            wake = self._wake = asyncio.Event()
        sleeper = asyncio.ensure_future(self._sleep(delay))
        woken = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait((sleeper, woken), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            woken.cancel()

    def retry_now(self) -> bool:
        """End every wait for a next attempt at once (the owner knows the vendor is back,
        whatever its ``Retry-After`` said). False when nothing was waiting to retry."""
        if not self.state.retrying:
            return False
        wake, self._wake = self._wake, asyncio.Event()
        if wake is not None:
            wake.set()
        self.state.next_attempt_at = self._clock()
        self.state.retried_now += 1
        log.info("destination %s: retry now (asked by its owner)", self.name,
                 extra={"destination": self.name, "phase": "retry_now"})
        return True

    async def _send_once(self, request: OutboundRequest, item_count: int,
                         priority: int) -> tuple[Response | None, object]:
        await self.gate.acquire(priority)
        granted = False
        try:
            ON_WIRE.set(await self.limiter.acquire(item_count))
            granted = True
            self.state.requests += 1
            self.on_wire += 1
            sending = asyncio.ensure_future(self.transport.send(request))
            try:
                response = await asyncio.shield(sending)
            except asyncio.CancelledError:
                # Stopped (a pause, a shutdown) with the request possibly on the wire:
                # only its answer says whether the vendor has it, and sending it again
                # after a resume would be a duplicate. Wait for it (at most
                # STOP_WAIT_SECONDS: a stop must not hang on a vendor), then stop.
                with contextlib.suppress(Exception):
                    answer = await asyncio.wait_for(sending, STOP_WAIT_SECONDS)
                    if isinstance(self.dtype.answer(answer.status, answer.headers,
                                                    answer.body, item_count), Sent):
                        raise _AcceptedThenStopped() from None
                raise
            except Exception as exc:  # noqa: BLE001 - every transport failure is classified
                return None, self.dtype.transport_error(exc)
        finally:
            if granted:
                self.on_wire -= 1
            self.gate.release()
        return response, self.dtype.answer(response.status, response.headers, response.body,
                                             item_count)

    def _ok(self) -> None:
        st = self.state
        if st.retrying:
            st.retrying = False
            st.next_attempt_at = None
            failing = max(0.0, self._clock() - (st.failing_since or self._clock()))
            log.info("destination %s recovered after failing for %s (%d failed attempts)",
                     self.name, human_duration(failing), st.failed_attempts,
                     extra={"destination": self.name, "phase": "recovered",
                            "failing_seconds": round(failing, 3),
                            "failed_attempts": st.failed_attempts})
            st.failing_since = None
            st.failed_attempts = 0
            st.failing = False

    def _failed(self, reason: str, delay: float, status: int | None = None) -> None:
        now = self._clock()
        st = self.state
        first = not st.retrying
        st.retrying = True
        st.retries += 1
        st.last_error = reason
        st.last_error_at = now
        st.next_attempt_at = now + delay
        st.failed_attempts = 1 if first else st.failed_attempts + 1
        fields = {"destination": self.name, "status": status,
                  "error": _one_line(reason, LOG_EXCERPT), "next_attempt_in": round(delay, 3)}
        if first:
            st.failing_since = st.reported_at = now
            log.warning("destination %s is retrying: %s (next attempt in %.2f s)", self.name,
                        fields["error"], delay, extra={**fields, "phase": "retrying"})
        elif now - (st.reported_at or now) >= STILL_FAILING_EVERY:
            st.reported_at = now
            failing = now - (st.failing_since or now)
            log.warning("destination %s still failing after %s and %d attempts: %s",
                        self.name, human_duration(failing), st.failed_attempts,
                        fields["error"],
                        extra={**fields, "phase": "still_failing",
                               "failing_seconds": round(failing, 3),
                               "failed_attempts": st.failed_attempts})


def _one_line(text: str, limit: int) -> str:
    """``text`` on one line (a vendor's HTML error page must not break the log), cut."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "…"


def _excerpt(response: Response | None) -> str | None:
    if response is None:
        return None
    return body_text(response.body, RESPONSE_EXCERPT)
