"""Accepting regulations: validate, resolve to whole profiles, store, put in force.

A regulation names user ids and anonymous ids; it applies to the whole people they
belong to: every identity their profiles joined by identify or alias (``ids``). A
suppression is in force for the collector, imports and every delivery as soon as
:meth:`RegulationService.create` returns (the blocklist is rebuilt before it answers).
A deletion is stored with a status per store and per configured destination and run by
a :class:`~millpond.regulations.job.DeletionJob` in the background; one that was running
when the server stopped is resumed by :meth:`RegulationService.start`.

On a scale-out cluster every process keeps its own blocklist, and the deletions run where
the segment engine and the profile follower do (the ``jobs`` lease's holder: a job
drives them, :class:`~millpond.regulations.job.Followers`). :meth:`RegulationService.follow`
runs on every process: it reads the regulations again each :data:`REFRESH_EVERY` seconds,
so one accepted by another process is in force here within that time, and the holder
starts the deletions others accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from millpond.errors import BadRequest
from millpond.regulations.blocklist import DELETING, SUPPRESSING, Blocklist
from millpond.regulations.forward import Forwarder
from millpond.regulations.job import STORE_STEPS, DeletionJob, Followers, Retries
from millpond.storage.contracts import Storage
from millpond.storage.models import Regulation, RegulationType, StepStatus

log = logging.getLogger("millpond.regulations")

#: Every regulation is loaded into the blocklist (they are few; ids are what count).
ALL = 1_000_000
#: Seconds between saves of the suppressed-event counters.
COUNT_EVERY = 1.0
#: Seconds between two reads of the regulations by :meth:`RegulationService.follow`.
REFRESH_EVERY = 1.0


def new_regulation_id() -> str:
    return "reg_" + secrets.token_hex(8)


class RegulationService:
    """See the module docstring. ``followers``: the profile follower and the segment
    engine, brought up to the log before a regulation is resolved (an identify that just
    arrived joins its ids) and driven by each deletion (see ``job.py``)."""

    def __init__(self, storage: Storage, blocklist: Blocklist, forwarder: Forwarder, *,
                 retries: Retries | None = None, followers: Followers | None = None,
                 steps: Mapping[str, Callable[[Sequence[str]], int]] | None = None):
        self.storage = storage
        self.store = storage.regulations
        self.blocklist = blocklist
        self.forwarder = forwarder
        self.retries = retries or Retries()
        self._followers = followers
        #: Whether deletions run in this process (on a cluster: only the jobs lease's
        #: holder; another one accepts them and leaves them to it).
        self.jobs_here = True
        #: The deletion steps outside the storage backend (``job.OUTSIDE_STORAGE``).
        self.steps = dict(steps or {})
        self._jobs: dict[str, asyncio.Task[None]] = {}
        #: Jobs that ended in this process (finished, or stopped on an error): never
        #: started again here, though a read of the regulations taken just before one
        #: finished still lists it as running (:meth:`follow`).
        self._ended: set[str] = set()
        self._counter: asyncio.Task[None] | None = None
        #: Serializes read-modify-write of one record (a job's steps, the counters).
        self._lock = threading.Lock()
        self.blocklist.load(self.store.list(ALL))

    # -- asking -----------------------------------------------------------------------------
    async def create(self, kind: RegulationType, user_ids: Sequence[str],
                     anonymous_ids: Sequence[str], requested_by: str) -> Regulation:
        """Store and put in force one regulation; BadRequest names the field."""
        user_ids, anonymous_ids = _clean(user_ids, "user_ids"), _clean(anonymous_ids,
                                                                      "anonymous_ids")
        if not user_ids and not anonymous_ids:
            raise BadRequest("name at least one person: user_ids or anonymous_ids, e.g. "
                             '{"type": "delete", "user_ids": ["user-42"]}', field="user_ids")
        if self._followers is not None:
            await self._followers.catch_up()
        users, anons = self._resolve(user_ids, anonymous_ids)
        reg = Regulation(new_regulation_id(), kind, user_ids, anonymous_ids,
                         [*users, *anons], requested_by, time.time(),
                         upto_seq=self.storage.log.last_seq(), resolved_user_ids=users,
                         resolved_anonymous_ids=anons)
        if kind in DELETING:
            reg.state = "running"
            reg.stores = {step: StepStatus() for step in STORE_STEPS}
            reg.destinations = {d.id: StepStatus() for d in self.storage.destinations.list()}
        elif kind == RegulationType.UNSUPPRESS:
            reg.state = "finished"
            reg.finished_at = reg.created_at
        await asyncio.to_thread(self._store_new, reg)
        log.info("regulation %s: %s of %d ids, asked by %s", reg.id, kind.value,
                 len(reg.ids), requested_by, extra={"regulation": reg.id})
        if kind in DELETING and self.jobs_here:
            self._start_job(reg)
        return reg

    def _store_new(self, reg: Regulation) -> None:
        with self._lock:
            if reg.type == RegulationType.UNSUPPRESS:
                wanted = set(reg.ids)
                for old in self.store.list(ALL):
                    if old.type in SUPPRESSING and old.lifted_by is None \
                            and wanted.intersection(old.ids):
                        old.lifted_by = reg.id
                        if old.type == RegulationType.SUPPRESS:
                            old.state, old.finished_at = "lifted", reg.created_at
                        self.store.update(old)
            self.store.create(reg)
            self.blocklist.load(self.store.list(ALL))

    def _resolve(self, user_ids: list[str], anonymous_ids: list[str],
                 ) -> tuple[list[str], list[str]]:
        """Every user id and anonymous id of the profiles the asked ids belong to."""
        users = dict.fromkeys(user_ids)
        anons = dict.fromkeys(anonymous_ids)
        for one in [*user_ids, *anonymous_ids]:
            profile = self.storage.profiles.get(one)
            if profile is None:
                continue
            users.update(dict.fromkeys(profile.get("user_ids") or []))
            anons.update(dict.fromkeys(profile.get("anonymous_ids") or []))
        return list(users), [a for a in anons if a not in users]

    def get(self, regulation_id: str) -> Regulation:
        return self._with_counts(self.store.get(regulation_id))

    def list(self, limit: int = 100) -> list[Regulation]:
        return [self._with_counts(r) for r in self.store.list(limit)]

    def _with_counts(self, reg: Regulation) -> Regulation:
        """Add the suppressed events not yet saved (the counter saves once a second)."""
        reg.suppressed += self.blocklist.pending(reg.id)
        return reg

    # -- running ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Resume the deletions a stop interrupted; start saving the counters."""
        for reg in self.refresh():
            if reg.id not in self._jobs:
                log.info("regulation %s: resuming its deletion", reg.id)
            self._start_job(reg)
        self._counter = asyncio.create_task(self._count_loop(), name="regulation-counts")

    async def follow(self, interval: float = REFRESH_EVERY) -> None:
        """A cluster's processes: the regulations others accepted, in force here and (on
        the jobs lease's holder) run; the counters of this process's collector saved.
        Until cancelled."""
        failing = False  # logged once per outage, not every second
        try:
            while True:
                await asyncio.sleep(interval)
                try:
                    running = await asyncio.to_thread(self.refresh)
                    if self.jobs_here:
                        for reg in running:
                            self._start_job(reg)
                    await asyncio.to_thread(self.save_counts)
                except Exception:  # noqa: BLE001 - the next round reads them again
                    if not failing:
                        log.exception("could not read the regulations; retrying every"
                                      " %.0f s", interval)
                    failing = True
                    continue
                if failing:
                    log.info("the regulations are read again")
                    failing = False
        finally:
            self.save_counts()

    def refresh(self) -> list[Regulation]:
        """Rebuild the blocklist from the stored regulations; the deletions running."""
        with self._lock:
            regulations = self.store.list(ALL)
            self.blocklist.load(regulations)
        return [r for r in regulations if r.type in DELETING and r.state == "running"]

    def _start_job(self, reg: Regulation) -> None:
        if reg.id in self._jobs or reg.id in self._ended:
            return
        job = DeletionJob(reg, self.storage, self.forwarder, self._save_job, self.retries,
                          self._redact, self._followers, self.steps)
        task = asyncio.get_running_loop().create_task(job.run(), name=f"regulation-{reg.id}")
        self._jobs[reg.id] = task
        task.add_done_callback(lambda t: self._finished(reg.id, t))

    def _finished(self, reg_id: str, task: asyncio.Task[None]) -> None:
        self._jobs.pop(reg_id, None)
        if not task.cancelled():
            self._ended.add(reg_id)
        if not task.cancelled() and task.exception() is not None:
            log.error("regulation %s stopped on an error; it resumes at the next start",
                      reg_id, exc_info=task.exception())

    def _save_job(self, reg: Regulation) -> None:
        """Save a job's progress, keeping the counters others add meanwhile."""
        with self._lock:
            stored = self.store.get(reg.id)
            stored.stores, stored.destinations = reg.stores, reg.destinations
            stored.state, stored.finished_at = reg.state, reg.finished_at
            stored.event_owners = reg.event_owners
            self.store.update(stored)

    def _redact(self, reg: Regulation) -> None:
        """A deletion (without suppression) whose stores and destinations are settled
        forgets the ids themselves (:func:`redact`); this process keeps screening them
        in memory. A suppression must keep its ids."""
        if reg.type != RegulationType.DELETE or reg.redacted:
            return
        with self._lock:
            stored = self.store.get(reg.id)
            if stored.redacted is None:
                redact(stored)
            self.store.update(stored)
            for name in ("user_ids", "anonymous_ids", "ids", "resolved_user_ids",
                         "resolved_anonymous_ids", "redacted"):
                setattr(reg, name, getattr(stored, name))
            self.blocklist.load(self.store.list(ALL))

    async def _count_loop(self) -> None:
        while True:
            await asyncio.sleep(COUNT_EVERY)
            await asyncio.to_thread(self.save_counts)

    def save_counts(self) -> None:
        counts = self.blocklist.take_counts()
        with self._lock:
            for reg_id, n in counts.items():
                with contextlib.suppress(Exception):
                    reg = self.store.get(reg_id)
                    reg.suppressed += n
                    self.store.update(reg)

    async def wait_idle(self) -> None:
        """Until every running deletion job has ended (tests, and a graceful stop)."""
        while self._jobs:
            await asyncio.gather(*self._jobs.values(), return_exceptions=True)

    async def stop(self) -> None:
        tasks = [t for t in (*self._jobs.values(), self._counter) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(self.save_counts)


def digest(key: str, one: str) -> str:
    """An id as a redacted regulation keeps it: its keyed BLAKE2b digest."""
    return "blake2b:" + hashlib.blake2b(one.encode(), key=bytes.fromhex(key),
                                        digest_size=16).hexdigest()


def redact(reg: Regulation) -> None:
    """Replace every id of ``reg`` by its digest under a new random key (kept in
    ``redacted``): whether an id was deleted stays checkable, the id itself is gone."""
    key = secrets.token_hex(16)
    for name in ("user_ids", "anonymous_ids", "ids", "resolved_user_ids",
                 "resolved_anonymous_ids"):
        setattr(reg, name, [digest(key, one) for one in getattr(reg, name)])
    reg.redacted = key


def _clean(ids: Sequence[str], field: str) -> list[str]:
    out: list[str] = []
    for i, one in enumerate(ids):
        if not one.strip():
            raise BadRequest(f"{field}[{i}] is blank; give the id as the SDK sent it",
                             field=f"{field}[{i}]")
        out.append(one)
    return list(dict.fromkeys(out))
