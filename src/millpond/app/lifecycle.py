"""Starting and stopping a server's background work, in the one order that is safe.

The server owns this (through the ASGI lifespan :mod:`millpond.app.asgi` handles), not
the admin API: the API is one of the things being served, and is built knowing
nothing about when delivery starts.

On the scale-out backend the work is shared (:mod:`millpond.app.membership`): a
``collector`` process runs none of it, and a worker runs the destinations and the jobs
whose leases it holds.
"""

from __future__ import annotations

import asyncio

from millpond import heap
from millpond.app.membership import Membership
from millpond.app.services import Services
from millpond.storage import archiver_of, leases_of

#: Seconds :meth:`Lifecycle.stop` waits for the cancelled tasks (one may be in a worker
#: thread, which finishes its step first) before it closes the stores.
STOP_WAIT_SECONDS = 10.0


class Lifecycle:
    """Background work of one server: delivery runs, the profile follower, the
    segment engine, retention and (on a cluster) the archiver."""

    def __init__(self, services: Services, url: str = ""):
        self.services = services
        self._tasks: list[asyncio.Task[None]] = []
        #: A cluster's: the regulations accepted by other processes (RegulationService.follow).
        self._follow: asyncio.Task[None] | None = None
        leases = leases_of(services.storage)
        #: The process's place in a scale-out cluster; None on the embedded store.
        self.membership = None if leases is None else Membership(
            leases, services.pumps, services.config.role, url,
            ttl=services.config.lease_seconds, start_jobs=self._start_jobs,
            stop_jobs=self._stop_jobs)

    async def start(self) -> None:
        """Start delivery (live runs, resumed replays) and the profile follower; needs
        the running event loop, so it is called from the lifespan's startup. Everything
        the server loaded so far stays for good: take it out of garbage collection first
        (:mod:`millpond.heap`)."""
        heap.settle()
        if self.membership is not None:
            # Builds and deletions run where the segment follower runs: the jobs lease's
            # holder. Every process keeps its blocklist in step with the regulations.
            self.services.segments.builds_here = False
            self.services.regulations.jobs_here = False
            self._follow = asyncio.create_task(self.services.regulations.follow())
            if self.membership.works:
                # launches none until leases are held; another process's redrives stay
                await self.services.pumps.start(recover=False)
            await self.membership.start()
            return
        await self.services.pumps.start()
        self._tasks.append(asyncio.create_task(self.services.profile_follower.run()))
        self._tasks.append(asyncio.create_task(self.services.segment_engine.run()))
        self._tasks.append(asyncio.create_task(self.services.segments.run_pending()))
        await self.services.regulations.start()  # resumes interrupted deletions
        self._tasks.append(asyncio.create_task(self.services.retention.run()))
        self._tasks.append(asyncio.create_task(self.services.outcome_retention.run()))

    def _start_jobs(self) -> None:
        """The jobs one worker of a cluster runs (the holder of the ``jobs`` lease)."""
        s = self.services
        self._tasks.append(asyncio.create_task(s.profile_follower.run()))
        self._tasks.append(asyncio.create_task(s.segment_engine.run()))
        s.segments.builds_here = True
        self._tasks.append(asyncio.create_task(s.segments.run_pending()))
        s.regulations.jobs_here = True
        self._tasks.append(asyncio.create_task(s.regulations.start()))  # resumes deletions
        self._tasks.append(asyncio.create_task(s.retention.run()))
        self._tasks.append(asyncio.create_task(s.outcome_retention.run()))
        archiver = archiver_of(s.storage)
        if archiver is not None:  # the embedded store's archiver is a thread of its own
            self._tasks.append(asyncio.create_task(archiver()))

    async def _stop_jobs(self) -> None:
        self.services.segments.builds_here = False
        await self.services.segments.stop_builds()
        self.services.regulations.jobs_here = False
        await self.services.regulations.stop()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def stop(self) -> None:
        """Stop delivery (checkpointing it), then the followers (on the embedded store,
        saving the segment follower's state for the next start), then close the stores,
        which finishes in-flight commits."""
        if self.membership is not None:
            await self.membership.stop()
            if self._follow is not None:
                self._follow.cancel()
                await asyncio.gather(self._follow, return_exceptions=True)
        else:
            await self.services.segments.stop_builds()
            await self.services.regulations.stop()
            await self.services.pumps.stop()
            for task in self._tasks:
                task.cancel()
            if self._tasks:
                _, running = await asyncio.wait(self._tasks, timeout=STOP_WAIT_SECONDS)
                if not running:  # the follower's state is now the one at its checkpoint
                    await asyncio.to_thread(self.services.segment_engine.save_state)
        self.services.close()
