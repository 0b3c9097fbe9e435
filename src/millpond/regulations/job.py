"""A deletion as a durable job: every store, then every destination, each step's status
saved as it settles, so a job interrupted anywhere (a SIGKILL included) is resumed at the
next start from its first unsettled step.

Why this order: dead letters are found by their events' seqs, so they go before the
events; profiles and segment rows go after the events and after the profile follower and
the segment engine have passed the log position of the deletion, so neither can write
the person back from an event it read before the events went; ``scrub`` is last among
the stores, so the bytes of every earlier step are gone from the files. Every step is
idempotent (a resumed step removes what is left and counts that), and vendors' deletion
APIs are too. ``import_files`` (the uploads kept by failed imports and every import's
error report, ``millpond.backfill.forget``) lives outside the storage backend: the
service names how it is done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from millpond.regulations.forward import Forwarded, Forwarder
from millpond.storage.contracts import Storage, StorageUnavailable
from millpond.storage.models import Regulation, StepStatus

log = logging.getLogger("millpond.regulations")

#: The stores a deletion goes through, in order (see the module docstring).
STORE_STEPS = ("dead_letters", "events", "rejections", "import_files", "profiles",
               "segment_memberships", "scrub")
#: Steps done outside the storage backend (the caller names how: ``steps``).
OUTSIDE_STORAGE = ("import_files",)
SETTLED = frozenset({"done", "not_supported"})


@dataclass(frozen=True)
class Retries:
    """How often and how patiently a failing step is tried again."""

    attempts: int = 5
    base_seconds: float = 2.0
    cap_seconds: float = 300.0
    #: The longest wait for the profile follower / segment engine to pass the deletion.
    follower_wait_seconds: float = 30.0

    def delay(self, attempt: int) -> float:
        return min(self.cap_seconds, self.base_seconds * 2 ** max(0, attempt - 1))


class Followers(Protocol):
    """What derives data from the log (profiles, segment memberships), as a deletion
    drives it (the server's: :class:`millpond.app.followers.LogFollowers`)."""

    async def catch_up(self) -> None:
        """Bring the profiles up to the log's end (an identify that just arrived joins
        the ids a regulation resolves)."""
        ...

    def withhold(self, ids: Sequence[str]) -> None:
        """From the job's start: derive nothing new that names ``ids``."""
        ...

    async def settle(self, owners: Mapping[str, bool] | None) -> None:
        """Once the events went: follow the log to its end, with ``owners`` (whose events
        went, read before: ``PersonEraser.event_owners``) evaluated again without them;
        None (unknown: a job resumed after its events went) has the followers read the
        log again instead."""
        ...

    async def rows_erased(self, ids: Sequence[str]) -> None:
        """The segment rows naming ``ids`` are gone from the store (what holds them
        elsewhere forgets them)."""
        ...

    def release(self, ids: Sequence[str]) -> None:
        """The derived stores no longer hold ``ids`` (their step is done, or the job
        stopped)."""
        ...


class DeletionJob:
    """Runs one regulation's deletion to the end; ``save`` stores the record after each
    step (durable on return)."""

    def __init__(self, regulation: Regulation, storage: Storage, forwarder: Forwarder,
                 save: Callable[[Regulation], None], retries: Retries,
                 redact: Callable[[Regulation], None],
                 followers: Followers | None = None,
                 steps: Mapping[str, Callable[[Sequence[str]], int]] | None = None):
        self.reg = regulation
        self.storage = storage
        self.forwarder = forwarder
        self._save = save
        self._redact = redact
        self._followers = followers
        #: How the steps outside the storage backend are done (none given: nothing to
        #: remove there, e.g. no import was ever uploaded).
        self._steps = dict(steps or {})
        self.retries = retries

    async def run(self) -> None:
        reg = self.reg
        ids = list(reg.ids)
        if self._followers is not None:
            self._followers.withhold(ids)
        try:
            for step in STORE_STEPS[:-1]:
                status = reg.stores.setdefault(step, StepStatus())
                if status.state in SETTLED:
                    continue
                if step == "events" and reg.event_owners is None:
                    reg.event_owners = await self._owners(ids)
                    await self._persist()
                if step == "profiles":
                    await self._wait_for_followers(reg.event_owners)
                    reg.event_owners = None  # saved with the step's status
                await self._store_step(step, status)
                if step == "segment_memberships" and self._followers is not None:
                    await self._followers.rows_erased(ids)
        finally:
            if self._followers is not None:
                self._followers.release(ids)
        for dest_id in list(reg.destinations):
            status = reg.destinations[dest_id]
            if status.state in SETTLED or (status.state == "failed"
                                           and status.attempts >= self.retries.attempts):
                continue
            await self._destination_step(dest_id, status)
        # The ids are no longer needed: the record forgets them (a deletion), then the
        # scrub removes every earlier copy of them, the record's own included.
        await asyncio.to_thread(self._redact, reg)
        status = reg.stores.setdefault("scrub", StepStatus())
        if status.state not in SETTLED:
            await self._store_step("scrub", status)
        reg.state = "finished"
        reg.finished_at = time.time()
        await self._persist()
        try:  # for the line below only
            names = {d.id: d.name for d in await asyncio.to_thread(
                self.storage.destinations.list)}
        except StorageUnavailable:
            names = {}
        log.info("regulation %s finished: %s", reg.id, summary(reg, names),
                 extra={"regulation": reg.id})

    async def _persist(self) -> None:
        await asyncio.to_thread(self._save, self.reg)

    async def _store_step(self, step: str, status: StepStatus) -> None:
        eraser = self.storage.eraser
        ids = list(self.reg.ids)
        while True:
            status.attempts += 1
            try:
                if step == "scrub":
                    await asyncio.to_thread(eraser.scrub)
                    removed = 0
                elif step in OUTSIDE_STORAGE:
                    outside = self._steps.get(step)
                    removed = 0 if outside is None else await asyncio.to_thread(outside, ids)
                else:
                    removed = await asyncio.to_thread(getattr(eraser, step), ids)
            except Exception as exc:  # noqa: BLE001 - the step's status says why
                status.state, status.reason = "failed", f"{type(exc).__name__}: {exc}"
                status.updated_at = time.time()
                await self._persist()
                log.warning("regulation %s: %s failed (attempt %d): %s", self.reg.id, step,
                            status.attempts, status.reason)
                # a store must end done: it keeps being retried, at the capped pace
                await asyncio.sleep(self.retries.delay(status.attempts))
                continue
            status.state, status.reason = "done", None
            status.removed += removed
            status.updated_at = time.time()
            await self._persist()
            return

    async def _destination_step(self, dest_id: str, status: StepStatus) -> None:
        reg = self.reg
        try:
            dest = self.storage.destinations.get(dest_id)
        except Exception:  # noqa: BLE001 - deleted since: nothing left to ask
            status.state, status.reason = "not_supported", "the destination was deleted"
            status.updated_at = time.time()
            await self._persist()
            return
        user_ids, anonymous_ids = reg.resolved_user_ids, reg.resolved_anonymous_ids
        while status.attempts < self.retries.attempts:
            status.attempts += 1
            try:
                outcome = await self.forwarder.forget(dest, user_ids, anonymous_ids,
                                                      reg.requested_by)
            except Forwarded as exc:
                status.state, status.reason = "failed", exc.reason
                status.updated_at = time.time()
                await self._persist()
                if not exc.retryable:
                    return
                if status.attempts < self.retries.attempts:
                    await asyncio.sleep(self.retries.delay(status.attempts))
                continue
            outcome.attempts = status.attempts
            reg.destinations[dest_id] = outcome
            await self._persist()
            return

    async def _owners(self, ids: list[str]) -> dict[str, bool] | None:
        """Whose events the events step removes (None: unknown, the followers then read
        the whole log again)."""
        if self._followers is None:
            return None
        try:
            owners = await asyncio.to_thread(self.storage.eraser.event_owners, ids)
        except Exception as exc:  # noqa: BLE001 - the slower way stays exact
            log.warning("regulation %s: could not read whose events go (%s: %s); the"
                        " segments will read the whole log again", self.reg.id,
                        type(exc).__name__, exc)
            return None
        others = len(owners.keys() - set(ids))
        if others:  # counted, not named: the log is no place for people's ids
            log.info("regulation %s: events of %d other user(s) carry these ids (a shared"
                     " device) and go too; they are evaluated again in every segment",
                     self.reg.id, others, extra={"regulation": self.reg.id})
        return owners

    async def _wait_for_followers(self, owners: dict[str, bool] | None) -> None:
        """Until the profile follower and the segment engine have passed the log position
        at which the events were removed (bounded: they may be stopped)."""
        if self._followers is not None:  # the server's: runs both up to the log's end
            await self._followers.settle(owners)
            return
        target = self.storage.log.last_seq()
        deadline = time.monotonic() + self.retries.follower_wait_seconds
        while time.monotonic() < deadline:
            if self.storage.profiles.checkpoint() >= target and \
                    self.storage.segments.checkpoint() >= target:
                return
            await asyncio.sleep(0.1)


def summary(reg: Regulation, names: dict[str, str] | None = None) -> str:
    """One line: each store's and destination's state (``names``: destinations' names by
    id), with the count removed where done and the reason where not."""
    def part(what: str, s: StepStatus) -> str:
        if s.state == "done":
            return f"{what} done ({s.removed})"
        return f"{what} {s.state}" + (f" ({s.reason})" if s.reason else "")

    parts = [part(name, s) for name, s in reg.stores.items()]
    parts += [part(f"destination {(names or {}).get(d, d)}", s)
              for d, s in reg.destinations.items()]
    return ", ".join(parts)
