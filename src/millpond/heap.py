"""Keeping the cyclic garbage collector off what a long-running process loaded at start.

Why: every full collection walks every container object still tracked, and a server
holds tens of thousands it made while starting (modules, classes, compiled mappings;
the warehouse loaders alone bring pyarrow and psycopg, the transport aiohttp) that stay
alive until it exits. A delivery pump allocates fast enough to trigger a full collection
every few seconds, and walking those objects made up a fifth of the Mixpanel pump's CPU
(``bench/deliver.py``). Frozen, they are left out of every collection; objects made
afterwards are collected as before. The price: a cycle among the frozen objects that
becomes garbage later is never freed, and start-up objects do not do that.

Why the young generation is collected every :data:`YOUNG_THRESHOLD` allocations instead
of every 700: a delivery with many requests in flight (a webhook of batch 1 keeps
hundreds going, each a few dozen aiohttp and asyncio objects alive for one round trip)
allocates a few hundred containers per event, so with 700 the young collection ran
every few events, found nearly everything still alive and promoted it, and the older
generations' collections then walked those thousands of in-flight objects again and
again: a quarter of the in-flight run's CPU (``bench/deliver.py --in-flight-only``).
Refcounting still frees nearly everything at once; cycles are collected, less often.
"""

from __future__ import annotations

import gc

#: Container allocations between two young-generation collections (CPython's default:
#: 700); the older generations keep their default ratios.
YOUNG_THRESHOLD = 50_000


def settle() -> None:
    """Collect what starting left behind, then freeze everything still alive. Call once
    the process has imported and built what it runs with, before it starts working."""
    freeze_survivors()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)


def freeze_survivors() -> None:
    """Collect, then freeze everything still alive: after building a large structure that
    lives long (the segment engine's running state), so full collections stop walking it.
    Collecting first keeps cyclic garbage of the moment out of the frozen set, where it
    could never be freed."""
    gc.collect()
    gc.freeze()
