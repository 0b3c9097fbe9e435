"""Starting and stopping a server's background work, in the one order that is safe.

The server owns this (through the ASGI lifespan :mod:`millpond.app.asgi` handles), not
the admin API: the API is one of the things being served, and is built knowing
nothing about when delivery starts.
"""

from __future__ import annotations

import asyncio

from millpond import heap
from millpond.app.services import Services


class Lifecycle:
    """Background work of one server: delivery runs, the profile follower, the
    segment engine and retention."""

    def __init__(self, services: Services):
        self.services = services
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start delivery (live runs, resumed replays) and the profile follower; needs
        the running event loop, so it is called from the lifespan's startup. Everything
        the server loaded so far stays for good: take it out of garbage collection first
        (:mod:`millpond.heap`)."""
        heap.settle()
        await self.services.pumps.start()
        self._tasks.append(asyncio.create_task(self.services.profile_follower.run()))
        self._tasks.append(asyncio.create_task(self.services.segment_engine.run()))
        await self.services.regulations.start()  # resumes interrupted deletions
        self._tasks.append(asyncio.create_task(self.services.retention.run()))
        self._tasks.append(asyncio.create_task(self.services.outcome_retention.run()))

    async def stop(self) -> None:
        """Stop delivery (checkpointing it), then the follower, then close the stores,
        which finishes in-flight commits."""
        await self.services.regulations.stop()
        await self.services.pumps.stop()
        for task in self._tasks:
            task.cancel()
        self.services.close()
