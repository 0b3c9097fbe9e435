"""When to try a failed request again: exponential backoff with full jitter.

Why full jitter (a uniformly random delay in ``[0, min(cap, base * 2**attempt)]``, as in
the AWS architecture blog's comparison): after an outage many pumps retry against the
same vendor, and equal delays would make them arrive together again. A vendor's
``Retry-After`` overrides the backoff: it knows better when it will take traffic, so we
wait at least that long (capped, so an absurd header cannot park a destination for
days), plus a little jitter for the same herd reason.

The pump retries forever while the destination is enabled: the events stay in the log,
so waiting costs nothing but lag, which is visible in the destination's stats. ``base``
and ``cap`` are the server's ``delivery.retry_base``/``retry_cap`` settings (end-to-end
tests set them low so they need not wait out real-world caps).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RetryPolicy:
    """Delays between attempts; ``delay`` is pure apart from the injected ``rng``."""

    base: float = 0.5
    cap: float = 30.0
    #: The longest ``Retry-After`` honoured (seconds); a destination may set its own
    #: (``rate_limit.max_retry_after``). Longer hints wait this long, then try again.
    max_retry_after: float = 300.0
    retry_after_jitter: float = 0.1
    #: After failing continuously this long (seconds), a destination gives up on the
    #: items it holds: dead letters, not retries (Segment's retry window is 4 hours).
    max_retry_age: float = 4 * 3600.0
    rng: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def backoff(self, attempt: int) -> float:
        """The ceiling of the jittered delay after the ``attempt``-th failure (0-based)."""
        return min(self.cap, self.base * (2 ** min(attempt, 62)))

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before the next attempt, after the ``attempt``-th failure."""
        if retry_after is not None and retry_after >= 0:
            wait = min(retry_after, self.max_retry_after)
            return wait + self.rng() * min(1.0, wait * self.retry_after_jitter)
        return self.rng() * self.backoff(attempt)
