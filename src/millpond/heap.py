"""Keeping the cyclic garbage collector off what a long-running process loaded at start.

Why: every full collection walks every container object still tracked, and a server
holds tens of thousands it made while starting (modules, classes, compiled mappings;
the warehouse loaders alone bring pyarrow and psycopg, the transport aiohttp) that stay
alive until it exits. A delivery pump allocates fast enough to trigger a full collection
every few seconds, and walking those objects made up a fifth of the Mixpanel pump's CPU
(``bench/deliver.py``). Frozen, they are left out of every collection; objects made
afterwards are collected as before. The price: a cycle among the frozen objects that
becomes garbage later is never freed, and start-up objects do not do that.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Collect what starting left behind, then freeze everything still alive. Call once
    the process has imported and built what it runs with, before it starts working."""
    gc.collect()
    gc.freeze()
