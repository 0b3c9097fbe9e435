"""The event log in a list: the contract without a disk, for fast tests.

Not durable (everything is gone with the process); otherwise it keeps every promise of
:class:`~millpond.storage.contracts.EventLog`: forever dedupe per source, seq strictly
increasing, waiters woken on any event loop from any thread.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import Future
from typing import NamedTuple

from millpond.errors import Overloaded
from millpond.storage import whole_log
from millpond.storage.models import (
    AppendResult,
    Expired,
    Expiry,
    NewEvent,
    StoredEvent,
    Window,
    owners_of,
)

#: Retention counts removed events per hour of event time (see ``EventLog.expired``).
HOUR_MS = 3_600_000


class Row(NamedTuple):
    """A stored event with the attributes the index filters on."""

    event: StoredEvent
    source_id: str
    type: str
    event_name: str | None
    user_id: str | None
    received_ms: int
    anonymous_id: str | None = None
    message_id: str = ""


class MemoryEventLog:
    """:class:`~millpond.storage.contracts.EventLog` in memory; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seqs: list[int] = []
        self._rows: list[Row] = []
        self._by_seq: dict[int, Row] = {}
        self._dedupe: dict[tuple[str, str], int] = {}
        #: Retention's bookkeeping: removed keys, counts per (source, hour), cutoffs.
        self._expired_keys: set[tuple[str, str]] = set()
        self._expired_hours: Counter[tuple[str, int]] = Counter()
        self._expired_before: dict[str, int] = {}
        self._last_seq = 0
        self._closed = False
        self._released = False
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    # -- writing ---------------------------------------------------------------------
    def _append(self, events: Sequence[NewEvent]) -> AppendResult:
        seqs: list[int | None] = []
        gone: list[int] = []
        with self._lock:
            if self._closed:
                raise Overloaded("the server is shutting down", retry_after=2)
            for i, e in enumerate(events):
                key = (e.source_id, e.message_id)
                if key in self._dedupe:
                    seqs.append(None)
                    if key in self._expired_keys:
                        gone.append(i)
                    continue
                self._last_seq += 1
                seq = self._last_seq
                row = Row(StoredEvent(seq, e.ts_ms, e.body), e.source_id, e.type, e.event_name,
                          e.user_id, e.received_ms, e.anonymous_id, e.message_id)
                self._dedupe[key] = seq
                self._seqs.append(seq)
                self._rows.append(row)
                self._by_seq[seq] = row
                seqs.append(seq)
            waiters, self._waiters = self._waiters, []
        _wake(waiters)
        return AppendResult(seqs, gone)

    async def append(self, events: Sequence[NewEvent]) -> AppendResult:
        return self._append(events)

    def submit(self, events: Sequence[NewEvent]) -> Future[AppendResult]:
        future: Future[AppendResult] = Future()
        result = self._append(events)  # Overloaded (closed) is raised here, at once
        future.set_result(result)
        return future

    def dedupe_keyer(self) -> Callable[[str, str], int] | None:
        return None

    def forget(self, seqs: Iterable[int], *, dedupe: bool = False) -> None:
        """Remove events: as retention would (their messageIds stay deduped; tests use it
        to make gaps in seq), or as a deletion does (``dedupe``: their messageIds go too,
        as the other backends forget them)."""
        with self._lock:
            for seq in seqs:
                row = self._by_seq.pop(seq, None)
                if row is not None:
                    i = bisect.bisect_left(self._seqs, seq)
                    del self._seqs[i]
                    del self._rows[i]
                    if dedupe:
                        self._dedupe.pop((row.source_id, row.message_id), None)

    async def expire(self, source_id: str, before_ms: int, *, limit: int = 10_000) -> Expiry:
        with self._lock:
            gone = [r for r in self._rows
                    if r.source_id == source_id and r.received_ms < before_ms][:limit]
            for row in gone:
                seq = row.event.seq
                del self._by_seq[seq]
                i = bisect.bisect_left(self._seqs, seq)
                del self._seqs[i]
                del self._rows[i]
                self._expired_keys.add((source_id, row.message_id))
                self._expired_hours[source_id, row.event.ts_ms // HOUR_MS] += 1
            self._expired_before[source_id] = max(before_ms,
                                                  self._expired_before.get(source_id, before_ms))
        return Expiry(len(gone), len(gone) < limit,
                      owners_of((row.user_id, row.anonymous_id) for row in gone))

    async def expired(self, window: Window) -> list[Expired]:
        first, last = window.ts_from // HOUR_MS, (window.ts_to - 1) // HOUR_MS
        totals: Counter[str] = Counter()
        with self._lock:
            for (source_id, hour), n in self._expired_hours.items():
                if first <= hour <= last and (window.source_ids is None
                                              or source_id in window.source_ids):
                    totals[source_id] += n
            return [Expired(s, totals[s], self._expired_before[s]) for s in sorted(totals)]

    # -- waiting ---------------------------------------------------------------------
    async def wait(self, after_seq: int, timeout: float) -> int:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._last_seq > after_seq or self._released:
                return self._last_seq
            self._waiters.append((loop, fut))
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            with self._lock, contextlib.suppress(ValueError):
                self._waiters.remove((loop, fut))
        return self._last_seq

    def release_waiters(self) -> None:
        with self._lock:
            self._released = True
            waiters, self._waiters = self._waiters, []
        _wake(waiters)

    # -- reading ---------------------------------------------------------------------
    def last_seq(self) -> int:
        return self._last_seq

    def rows(self) -> list[Row]:
        """A snapshot of every stored row in seq order (for the index)."""
        with self._lock:
            return list(self._rows)

    async def read(self, after_seq: int, limit: int, *, upto_seq: int | None = None,
                   types: frozenset[str] | None = None) -> list[StoredEvent]:
        out: list[StoredEvent] = []
        with self._lock:
            rows = self._rows
            for i in range(bisect.bisect_right(self._seqs, after_seq), len(rows)):
                row = rows[i]
                if len(out) >= limit or (upto_seq is not None and row.event.seq > upto_seq):
                    break
                if types is None or row.type in types:
                    out.append(row.event)
        return out

    def read_all(self, upto_seq: int, chunk: int = 20_000) -> AsyncIterator[list[StoredEvent]]:
        return whole_log.read_all(None, self, upto_seq, chunk)

    async def get(self, seq: int) -> StoredEvent | None:
        row = self._by_seq.get(seq)
        return None if row is None else row.event

    async def find(self, source_id: str, message_id: str) -> StoredEvent | None:
        seq = self._dedupe.get((source_id, message_id))
        row = None if seq is None else self._by_seq.get(seq)
        return None if row is None else row.event

    def people_seqs(self, ids: Sequence[str]) -> list[int]:
        """The seqs of the events whose user id or anonymous id is one of ``ids``."""
        return [seq for seq, _user, _anonymous in self._people_rows(ids)]

    def people_owners(self, ids: Sequence[str]) -> dict[str, bool]:
        """``PersonEraser.event_owners``: whose events :meth:`people_seqs` names."""
        return owners_of((user, anonymous) for _seq, user, anonymous in self._people_rows(ids))

    def _people_rows(self, ids: Sequence[str]) -> list[tuple[int, str | None, str | None]]:
        wanted = set(ids)
        with self._lock:
            return [(r.event.seq, r.user_id, r.anonymous_id) for r in self._rows
                    if r.user_id in wanted or r.anonymous_id in wanted]

    def close(self) -> None:
        with self._lock:
            self._closed = True


def _wake(waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]) -> None:
    for loop, fut in waiters:
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
            loop.call_soon_threadsafe(_resolve, fut)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
