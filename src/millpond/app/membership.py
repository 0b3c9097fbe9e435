"""One process's membership of a scale-out cluster: its heartbeat, and the leases through
which workers share the destinations and the background jobs.

Why leases per destination, not per stream partition: delivery reads the log by its one
sequence (the stream's), and each destination has one live cursor, ledger and counters,
committed together with its checkpoints in PostgreSQL. One owner per destination keeps
what a single process promises: per-user order (one reader in seq order) and the
destination's checkpoints written by one process, so a new owner resumes exactly at the
last committed cursor. Splitting one destination by partition would need a cursor per
partition and per-partition ledgers (not built). The jobs that must run once per cluster
(profile follower, segment engine, retention, regulations) share one lease, ``jobs``.

How a worker takes its share: every third of the lease time it renews what it holds and
takes free or expired leases up to a fair share (destinations over live workers, rounded
up), so two workers split the destinations and a killed one's are taken over one lease
time after its last renewal. A worker that cannot renew stops its pumps before its leases
can expire (a third of the lease time early), so two owners never deliver at once unless
a process stalls longer than that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable

from millpond.connections.service import PumpManager
from millpond.storage.contracts import LeaseStore, StorageUnavailable
from millpond.storage.models import Lease, ProcessInfo

__all__ = ["JOBS", "Membership"]

log = logging.getLogger("millpond.cluster")

#: The lease of the jobs that run on one worker of the cluster at a time.
JOBS = "jobs"
DEST = "destination:"


def process_id() -> str:
    """``host:pid:random``: unique across restarts and hosts, readable in status."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Membership:
    """Heartbeat and leases of one process (``role``: all, collector or worker)."""

    def __init__(self, leases: LeaseStore, pumps: PumpManager, role: str, url: str, *,
                 ttl: float = 10.0,
                 start_jobs: Callable[[], None] | None = None,
                 stop_jobs: Callable[[], Awaitable[None]] | None = None):
        self.leases = leases
        self.pumps = pumps
        self.role = role
        self.ttl = ttl
        self.me = ProcessInfo(process_id(), role, socket.gethostname(), os.getpid(), url)
        self._start_jobs = start_jobs
        self._stop_jobs = stop_jobs
        self._jobs_running = False
        self.held: set[str] = set()
        #: monotonic time by which every lease in ``held`` may have expired
        self._valid_until = 0.0
        self._task: asyncio.Task[None] | None = None
        self.renew_seconds = ttl / 3
        pumps.cluster = self

    @property
    def works(self) -> bool:
        return self.role != "collector"

    async def start(self) -> None:
        """First heartbeat and claim before the server says it is ready, then a loop."""
        self.pumps.owned = set()  # a collector delivers none; a worker its leases'
        await self.tick()
        self._task = asyncio.create_task(self._run(), name="cluster-membership")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.renew_seconds)
            try:
                await self.tick()
            except Exception:  # never let the loop die: the next tick tries again
                log.exception("cluster membership tick failed")

    async def tick(self) -> None:
        began = time.monotonic()
        try:
            await asyncio.to_thread(self.leases.heartbeat, self.me)
            if self.works:
                held = await asyncio.to_thread(self._claim)
                self._valid_until = began + self.ttl
                await self._apply(held)
                await self._exchange()
        except StorageUnavailable as exc:
            log.warning("cluster: cannot reach the state database (%s)", exc)
            if self.works and time.monotonic() > self._valid_until - self.ttl / 3:
                await self._apply(set())  # our leases are about to expire: stop first

    def _claim(self) -> set[str]:
        dests = [d.id for d in self.pumps.destinations.list() if d.enabled]
        workers = [p for p in self.leases.processes(forget_after=self.ttl)
                   if p.role != "collector"]
        share = math.ceil(len(dests) / max(len(workers), 1))
        leases = {lease.name: lease for lease in self.leases.leases()}
        mine = {n for n, lease in leases.items() if lease.owner == self.me.id
                and lease.expires_in > 0}
        wanted = [DEST + d for d in dests if DEST + d in mine]
        free = [DEST + d for d in dests if DEST + d not in mine
                and (DEST + d not in leases or leases[DEST + d].expires_in <= 0)]
        wanted += free[:max(share - len(wanted), 0)]
        if JOBS in mine or JOBS not in leases or leases[JOBS].expires_in <= 0:
            wanted.append(JOBS)
        gone = mine - set(wanted)  # deleted or disabled destinations
        if gone:
            self.leases.release(gone, self.me.id)
        return self.leases.claim(wanted, self.me.id, self.ttl)

    async def _apply(self, held: set[str]) -> None:
        gained, lost = held - self.held, self.held - held
        if gained or lost:
            log.info("cluster: %s holds %d lease(s)%s%s", self.me.id, len(held),
                     f"; took {', '.join(sorted(gained))}" if gained else "",
                     f"; gave up {', '.join(sorted(lost))}" if lost else "")
        self.held = held
        await self.pumps.sync({n.removeprefix(DEST) for n in held if n.startswith(DEST)})
        if JOBS in held and not self._jobs_running and self._start_jobs is not None:
            self._start_jobs()
            self._jobs_running = True
        elif JOBS not in held and self._jobs_running and self._stop_jobs is not None:
            await self._stop_jobs()
            self._jobs_running = False

    async def _exchange(self) -> None:
        """Answer the retry-now requests other processes saved for this one's
        destinations, then publish their state, so any process shows it (the API's stats,
        the console) within a renewal."""
        for name in await asyncio.to_thread(self.leases.retry_requests, self.me.id):
            if name.startswith(DEST):
                self.pumps.retry_here(name.removeprefix(DEST))
        states = {DEST + dest_id: state for dest_id, state in self.pumps.states().items()}
        await asyncio.to_thread(self.leases.publish, self.me.id, states)

    # what this process knows of the destinations the others deliver (PumpManager.cluster)
    def lease_of(self, dest_id: str) -> Lease | None:
        return next((lease for lease in self.leases.leases()
                     if lease.name == DEST + dest_id and lease.expires_in > 0), None)

    def ask_retry(self, dest_id: str) -> bool:
        return self.leases.ask_retry(DEST + dest_id)

    async def stop(self) -> None:
        """Stop the loop and leave: the leases are free for the others at once (the
        caller stops the pumps, which checkpoint, before the stores close)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._jobs_running and self._stop_jobs is not None:
            await self._stop_jobs()
            self._jobs_running = False
        await self.pumps.stop()
        with contextlib.suppress(StorageUnavailable):
            await asyncio.to_thread(self.leases.leave, self.me.id)
