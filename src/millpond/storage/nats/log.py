"""The event log on a NATS JetStream stream (:class:`~millpond.storage.contracts.EventLog`).

How the log's promises map onto JetStream:

- ``seq`` is the stream sequence. One stream holds every partition (subjects
  ``<subject>.<partition>.<type>``), so its sequence is one counter in commit order for the
  whole log: strictly increasing, never reused (deleted messages leave gaps, which the
  contract allows), and a position in the log is one number, as on the embedded store.
- durable on return: an append returns once every event has its PubAck, i.e. a quorum of
  the replicas stored it (file storage; not yet fsynced: JetStream syncs every
  ``sync_interval``, so a simultaneous power loss of a quorum could lose the last seconds).
- dedupe: ``Nats-Msg-Id`` is a digest of (source, messageId), so the stream refuses a
  duplicate inside its ``duplicate_window`` and answers with the first copy's seq, which
  the log reports as None. Beyond the window it does not: dedupe *forever* and
  :meth:`find` need a :class:`~millpond.storage.nats.dedupe.DedupeTable` (PostgreSQL's),
  checked before publishing and written before an append returns.
- waits: once an append is acknowledged, the process that made it announces its last seq
  on a core subject (one small message per append, not per event: a per-event signal, as
  the stream's republish or a headers-only consumer would give, costs each process more
  than the appends themselves, nats-py parses headers slowly), and every process's log
  subscribes to it. An announcement lost with a crashed process costs a waiter its
  timeout, after which the log asks the stream for its last seq.

Why a thread with its own event loop: the contract's callers are on any thread (an
import's producer calls :meth:`submit`) and on any event loop (the server's, a test's); one
connection on one loop of the log's own serves them all, as the embedded store's writer
thread does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from millpond.errors import Overloaded, TooLarge
from millpond.storage import whole_log
from millpond.storage.contracts import StorageUnavailable
from millpond.storage.models import (
    AppendResult,
    Expired,
    Expiry,
    NewEvent,
    StoredEvent,
    StreamState,
    Window,
)
from millpond.storage.nats.client import LogClient, header_block, subscribe
from millpond.storage.nats.client import jetstream as _jetstream
from millpond.storage.nats.coalesce import Coalescer
from millpond.storage.nats.dedupe import INDEX_HEADER, Indexed, Key, LogTable, Seen
from millpond.storage.nats.publisher import Ack, Outgoing, Publisher
from millpond.storage.nats.reader import (
    BATCH,
    TS_HEADER,
    direct_batch,
    direct_get,
    stored_event,
)
from millpond.storage.nats.settings import LogSettings
from millpond.storage.nats.stream import ensure_stream
from millpond.storage.nats.subjects import msg_id, subject_for, type_token
from millpond.storage.nats.tombstones import Tombstones

if TYPE_CHECKING:
    from millpond.storage.postgres.archive import PgArchive

__all__ = ["JetStreamEventLog"]

log = logging.getLogger("millpond.storage.nats")
_T = TypeVar("_T")

#: How long a read waits for its answer before StorageUnavailable.
READ_TIMEOUT = 5.0
#: The index header's JSON (UTF-8, as NATS headers are read: ``client.py``).
_encode = msgspec.json.Encoder().encode
#: Seqs at most this far apart are fetched in one batch (the ones between come along).
FETCH_GAP = 16
#: Batches of a fetch in flight at once.
FETCH_CONCURRENCY = 32
#: Rounds of sending an erased event again (:meth:`JetStreamEventLog._resend_erased`).
MAX_RESENDS = 8


async def _probe(servers: Sequence[str], timeout: float) -> None:
    """Raise StorageUnavailable at once when no server accepts a TCP connection: the
    client's own first connect retries the list until its timeout (10-15 s), which for a
    refused port only delays the same answer."""
    errors: list[tuple[str, str]] = []
    for url in servers:
        host, _, port = url.removeprefix("nats://").rpartition("@")[2].rpartition(":")
        try:
            _reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host.strip("[]"), int(port)), timeout)
        except (OSError, TimeoutError, ValueError) as exc:
            errno = getattr(exc, "errno", None)
            why = os.strerror(errno).lower() if errno else str(exc) or "timed out"
            errors.append((url, why))
            continue
        writer.close()
        return
    reasons = {why for _, why in errors}
    said = reasons.pop() if len(reasons) == 1 else "; ".join(f"{u}: {w}" for u, w in errors)
    raise StorageUnavailable(f"cannot reach NATS at {','.join(servers)}: {said}")


class JetStreamEventLog:
    """:class:`~millpond.storage.contracts.EventLog` on a JetStream stream; thread-safe.

    Opening connects and creates the stream (or checks the one there); raises
    StorageUnavailable when NATS cannot be reached, StreamMisconfigured for a stream with
    settings the log cannot use."""

    def __init__(self, settings: LogSettings, dedupe: LogTable | None = None):
        self._s = settings
        self._dedupe = dedupe
        # appends in flight share the table's round trips and commits (see coalesce.py)
        self._seen: Coalescer[Key, dict[Key, Seen]] | None = None
        self._record: Coalescer[Indexed, None] | None = None
        if dedupe is not None:
            self._seen = Coalescer(lambda keys: dedupe.seen(keys))
            self._record = Coalescer(lambda rows: dedupe.record(rows))
        self._lock = threading.Lock()
        self._last_seq = 0
        self._deleted = Tombstones()
        self._closed = False
        self._stopped = False
        self._released = False
        self._pending_events = 0
        self._in_flight: set[Future[AppendResult]] = set()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name=f"jetstream-log-{settings.stream}")
        self._thread.start()
        self._nc: Client | None = None
        #: The archive tier (``storage/postgres/archive.py``), when the storage opened one:
        #: seqs up to its last file's are read from it, the rest from the stream.
        self.archive: PgArchive | None = None
        self._publisher: Publisher | None = None
        #: the turn of the append submitted last: done once it has written its messages
        self._last_turn: asyncio.Future[None] | None = None
        try:
            self._on_loop(self._open()).result(settings.connect_timeout + 30)
        except BaseException:
            self._stop_loop()
            raise

    # -- the connection --------------------------------------------------------------
    async def _open(self) -> None:
        s = self._s
        # Reconnects go on forever once connected (a node restarts, the client moves on);
        # the first connection is bounded, so an unreachable cluster is one clear error.
        await _probe(s.servers, s.connect_timeout)
        nc = LogClient()
        try:
            await asyncio.wait_for(nc.connect(
                list(s.servers), connect_timeout=_seconds(s.connect_timeout),
                allow_reconnect=True, max_reconnect_attempts=-1,
                reconnect_time_wait=_seconds(0.5), name="millpond-log",
                error_cb=self._on_error, reconnected_cb=self._on_reconnect),
                s.connect_timeout * (len(s.servers) + 1))
        except Exception as exc:  # TimeoutError, NoServersError, OSError
            with contextlib.suppress(Exception):
                await nc.close()
            raise StorageUnavailable(
                f"cannot reach NATS at {','.join(s.servers)}: "
                f"{str(exc) or type(exc).__name__}") from exc
        self._nc = nc
        try:
            self._note_seq(await ensure_stream(_jetstream(nc, s.connect_timeout), s))
        except (nats.errors.TimeoutError, nats.js.errors.ServiceUnavailableError,
                nats.errors.NoRespondersError) as exc:
            await nc.close()
            raise StorageUnavailable(
                f"NATS at {','.join(s.servers)} answers but its JetStream does not "
                f"(enabled? a quorum of the cluster up?): {exc!r}") from exc
        except BaseException:
            await nc.close()
            raise
        if self._dedupe is not None:
            await self._repair_index(self._dedupe)
        self._publisher = Publisher(nc, s)
        await self._publisher.start()
        self._last_turn = asyncio.get_running_loop().create_future()
        self._last_turn.set_result(None)
        await subscribe(nc, s.notify_subject, self._on_notify)

    async def _repair_index(self, table: LogTable, upto: int | None = None) -> None:
        """Index what the stream holds up to ``upto`` (its end) and the table lacks
        (appends that crashed between their PubAck and their record; see ``dedupe.py``),
        then move the table's mark."""
        upto = self._last_seq if upto is None else upto
        _mark, missing = await table.unindexed(upto)
        found = await self._fetch(missing, index=True)
        rows = [row for e, raw in found.values() if (row := _indexed(e, raw)) is not None]
        if rows:
            log.warning("indexed %d events the stream held without an index row (an append "
                        "that crashed after its acknowledgement)", len(rows))
        await table.record(rows)
        await table.set_mark(upto)

    async def _on_error(self, exc: Exception) -> None:
        log.debug("nats connection: %r", exc)

    async def _on_reconnect(self) -> None:
        await self._refresh()  # announcements made while this connection was away are lost

    async def _on_notify(self, msg: Msg) -> None:
        with contextlib.suppress(ValueError):
            self._note_seq(int(msg.data))

    async def _refresh(self) -> None:
        """Learn the stream's last seq from the stream itself (announcements were lost)."""
        if self._nc is not None:
            with contextlib.suppress(Exception):
                info = await _jetstream(self._nc, 1.0).stream_info(self._s.stream)
                self._note_seq(info.state.last_seq)

    def _on_loop(self, coro: Coroutine[Any, Any, Any]) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if self._stopped:
            coro.close()
            raise StorageUnavailable("the log is closed")
        return await asyncio.wrap_future(self._on_loop(coro))

    @property
    def _client(self) -> Client:
        assert self._nc is not None
        return self._nc

    # -- writing ---------------------------------------------------------------------
    def _outgoing(self, events: Sequence[NewEvent],
                  stored: Mapping[Key, Seen]) -> tuple[list[Outgoing], list[int]]:
        """The messages to publish and, for each, the index of its event; a repeat of a
        (source, messageId) inside the batch, or one ``stored`` before, is not sent (it
        is a duplicate)."""
        s = self._s
        seen: set[Key] = set(stored)
        items: list[Outgoing] = []
        where: list[int] = []
        for i, e in enumerate(events):
            key = (e.source_id, e.message_id)
            if key in seen:
                continue
            seen.add(key)
            item = self._message(e, msg_id(e.source_id, e.message_id))
            if len(e.body) + len(item[2]) > s.max_msg_size:
                raise TooLarge(f"event {e.message_id!r} of source {e.source_id} is "
                               f"{len(e.body)} bytes: over the log's max_msg_size "
                               f"({s.max_msg_size} bytes with its headers)", field="body")
            items.append(item)
            where.append(i)
        return items, where

    def _message(self, e: NewEvent, nats_msg_id: str) -> Outgoing:
        headers = header_block((
            ("Nats-Msg-Id", nats_msg_id), (TS_HEADER, str(e.ts_ms)),
            (INDEX_HEADER, _encode([e.source_id, e.message_id, e.type, e.event_name,
                                    e.user_id, e.anonymous_id, e.received_ms]).decode())))
        return subject_for(self._s.subject, e, self._s.partitions), e.body, headers

    async def _resend_erased(self, events: Sequence[NewEvent], where: Sequence[int],
                             acks: list[Ack]) -> list[Ack]:
        """``acks`` with each "duplicate" whose first copy is no longer in the log sent
        again, under another ``Nats-Msg-Id``.

        Why: the stream remembers a ``Nats-Msg-Id`` for its whole duplicate window, even
        once its message is deleted. An event a regulation erased is forgotten by the
        dedupe table, and sent again it must be stored again (a deletion is not a
        suppression); the stream would answer "duplicate" with the deleted copy's seq,
        and the append would acknowledge an event it did not store. Sent again, the id
        names the copy it replaces (``<id>.<its seq>``): a retry of this append finds the
        same copy gone and sends the same id, which the stream then dedupes as usual.
        Only a duplicate the table did not know is checked here (the table's own are
        never sent), so appends pay this only for retries inside the window."""
        assert self._publisher is not None
        acks = list(acks)
        for _attempt in range(MAX_RESENDS):
            told = [n for n, (_, duplicate) in enumerate(acks) if duplicate]
            held = await asyncio.gather(*(self._holds(acks[n][0]) for n in told))
            gone = [n for n, still in zip(told, held, strict=True) if not still]
            if not gone:
                return acks
            items = [self._message(e, f"{msg_id(e.source_id, e.message_id)}.{acks[n][0]}")
                     for n in gone for e in (events[where[n]],)]
            for n, ack in zip(gone, await self._publisher.publish(items), strict=True):
                acks[n] = ack
        raise StorageUnavailable("an event was deleted again each time it was sent again",
                                 retry_after=2.0)

    async def _holds(self, seq: int) -> bool:
        """Whether the log still holds ``seq`` (a replica answers once it has applied the
        log up to it: its 404 is a delete, not a lag)."""
        if seq in self._deleted:
            return False
        found = await direct_get(self._client, self._s.stream, seq, max(seq, self._last_seq),
                                 READ_TIMEOUT)
        archive = self.archive
        if found is not None or archive is None:
            return found is not None
        await asyncio.to_thread(archive.refresh)  # archived (and purged) meanwhile?
        return seq <= archive.archived_upto() and await asyncio.to_thread(
            archive.retrying, lambda: archive.get(seq)) is not None

    async def _append(self, events: Sequence[NewEvent]) -> AppendResult:
        assert self._publisher is not None and self._last_turn is not None
        # Appends go out in the order they were submitted: each takes its place in line
        # as it starts (tasks start in submission order), looks its events up in the
        # dedupe table meanwhile, writes its messages once the one before it has written
        # its own, lets the next one go, then waits for its acks alone.
        before, mine = self._last_turn, asyncio.get_running_loop().create_future()
        self._last_turn = mine

        def release() -> None:
            if not mine.done():
                mine.set_result(None)

        try:
            stored: dict[Key, Seen] = {}
            if self._seen is not None:
                stored = await self._seen(list({(e.source_id, e.message_id): None
                                                       for e in events}))
            items, where = self._outgoing(events, stored)
            await before
            acks = await self._publisher.publish(items, after_send=release)
        finally:
            release()
        if any(duplicate for _, duplicate in acks):
            acks = await self._resend_erased(events, where, acks)
        seqs: list[int | None] = [None] * len(events)
        for i, (seq, duplicate) in zip(where, acks, strict=True):
            seqs[i] = None if duplicate else seq
        if self._record is not None:  # before the append returns: then it is forever
            await self._record([_row(seq, events[i])
                                       for i, (seq, _) in zip(where, acks, strict=True)])
        expired = [i for i, e in enumerate(events)
                   if (seen := stored.get((e.source_id, e.message_id))) and seen.expired]
        if acks:
            last = max(seq for seq, _ in acks)
            self._note_seq(last)
            with contextlib.suppress(Exception):  # a lost announcement costs a timeout
                await self._client.publish(self._s.notify_subject, b"%d" % last)
        return AppendResult(seqs, expired)

    def submit(self, events: Sequence[NewEvent]) -> Future[AppendResult]:
        with self._lock:
            if self._closed:
                raise Overloaded("the server is shutting down", retry_after=2)
            if self._pending_events + len(events) > self._s.max_pending:
                raise Overloaded("the log is behind: too many events waiting for their "
                                 "acknowledgement", retry_after=1)
            self._pending_events += len(events)
            future: Future[AppendResult] = self._on_loop(self._append(events))
            self._in_flight.add(future)
        count = len(events)

        def done(f: Future[AppendResult]) -> None:
            with self._lock:
                self._pending_events -= count
                self._in_flight.discard(f)

        future.add_done_callback(done)
        return future

    async def append(self, events: Sequence[NewEvent]) -> AppendResult:
        return await asyncio.wrap_future(self.submit(events))

    def dedupe_keyer(self) -> Callable[[str, str], int] | None:
        return None

    # -- reading ---------------------------------------------------------------------
    async def _scan(self, start: int, limit: int, upto: int | None,
                    subject: str | None) -> list[StoredEvent]:
        out: list[StoredEvent] = []
        while len(out) < limit:
            want = limit - len(out)
            if upto is not None:
                if start > upto:
                    break
                if subject is None:
                    want = min(want, upto - start + 1)
            batch, more = await direct_batch(self._client, self._s.stream, start,
                                             min(want, BATCH), self._last_seq, READ_TIMEOUT,
                                             subject)
            deleted = self._deleted if self._deleted else ()
            out.extend(e for e in batch if (upto is None or e.seq <= upto)
                       and e.seq not in deleted)
            if not batch or not more or (upto is not None and batch[-1].seq >= upto):
                break
            start = batch[-1].seq + 1
        return out[:limit]

    async def _read(self, after_seq: int, limit: int, upto_seq: int | None,
                    types: frozenset[str] | None) -> list[StoredEvent]:
        if limit <= 0 or (upto_seq is not None and upto_seq <= after_seq):
            return []
        if types is None:
            return await self._scan(after_seq + 1, limit, upto_seq, None)
        out: list[StoredEvent] = []
        for kind in sorted(types):  # one subject filter per type, merged by seq
            out.extend(await self._scan(after_seq + 1, limit, upto_seq,
                                        f"{self._s.subject}.*.{type_token(kind)}"))
        out.sort(key=lambda e: e.seq)
        return out[:limit]

    async def read(self, after_seq: int, limit: int, *, upto_seq: int | None = None,
                   types: frozenset[str] | None = None) -> list[StoredEvent]:
        archive = self.archive
        if archive is None:
            return await self._call(self._read(after_seq, limit, upto_seq, types))
        while True:
            top = archive.archived_upto()
            out: list[StoredEvent] = []
            after = after_seq
            if after_seq < top:  # the archive's part first (its reads block: a thread)
                high = top if upto_seq is None else min(upto_seq, top)
                out = await asyncio.to_thread(archive.retrying, lambda high=high: archive.read(
                    after_seq, limit, high, types))
                if len(out) >= limit or (upto_seq is not None and upto_seq <= top):
                    return out
                after = top
            hot = await self._call(self._read(after, limit - len(out), upto_seq, types))
            if not await self._archived_since(archive, after + 1, hot):
                return out + hot

    async def _archived_since(self, archive: PgArchive, start: int,
                              found: Sequence[StoredEvent]) -> bool:
        """Whether the stream read from ``start`` may have missed seqs another process
        archived (and purged) since this one read the manifest: it found nothing at
        ``start`` though the log is past it, and the manifest, read again, now reaches it.
        Why not "moved since the read began": the archive's own read refreshes the
        manifest too, so it may have moved already, past the ``top`` the read used."""
        if (found and found[0].seq == start) or start > self._last_seq:
            return False
        await asyncio.to_thread(archive.refresh)
        return archive.archived_upto() >= start

    def read_all(self, upto_seq: int, chunk: int = 20_000) -> AsyncIterator[list[StoredEvent]]:
        return whole_log.read_all(self.archive, self, upto_seq, chunk)

    async def get(self, seq: int) -> StoredEvent | None:
        if seq <= 0 or seq in self._deleted:
            return None
        archive = self.archive
        if archive is not None and seq <= archive.archived_upto():
            return await asyncio.to_thread(archive.retrying, lambda: archive.get(seq))
        found = await self._call(direct_get(self._client, self._s.stream, seq, self._last_seq,
                                            READ_TIMEOUT))
        if found is None and archive is not None:
            await asyncio.to_thread(archive.refresh)
            if seq <= archive.archived_upto():
                return await asyncio.to_thread(archive.retrying, lambda: archive.get(seq))
        return found

    async def find(self, source_id: str, message_id: str) -> StoredEvent | None:
        """Not on the stream alone (it has no look-up by header): the dedupe table knows
        the seq. Without one, this raises."""
        if self._dedupe is None:
            raise NotImplementedError("find() on the JetStream log needs a dedupe table")
        dedupe = self._dedupe

        seq = await self._call(dedupe.find(source_id, message_id))
        return None if seq is None or seq in self._deleted else await self.get(seq)

    async def _fetch(self, seqs: Sequence[int], index: bool = False,
                     ) -> dict[int, tuple[StoredEvent, str | None]]:
        """The events at ``seqs`` (those still stored), with their index header when
        ``index``, read in batches over runs of nearby seqs, the batches concurrently:
        the index's way to the bodies."""
        convert = _with_index if index else _without_index
        wanted = sorted(set(seqs))
        runs: list[tuple[int, int]] = []
        for seq in wanted:
            if runs and seq - runs[-1][1] <= FETCH_GAP and seq - runs[-1][0] < BATCH:
                runs[-1] = (runs[-1][0], seq)
            else:
                runs.append((seq, seq))
        want = {seq for seq in wanted if seq not in self._deleted}
        found: dict[int, tuple[StoredEvent, str | None]] = {}
        limit = asyncio.Semaphore(FETCH_CONCURRENCY)

        async def one(first: int, last: int) -> None:
            async with limit:
                if first == last:
                    got = await direct_get(self._client, self._s.stream, first,
                                           self._last_seq, READ_TIMEOUT, convert)
                    batch = [] if got is None else [got]
                else:
                    batch, _ = await direct_batch(self._client, self._s.stream, first,
                                                  last - first + 1, self._last_seq,
                                                  READ_TIMEOUT, None, convert)
            for item in batch:
                if item[0].seq in want:
                    found[item[0].seq] = item

        await asyncio.gather(*(one(a, b) for a, b in runs))
        return found

    async def fetch(self, seqs: Sequence[int], ts: Sequence[int] | None = None,
                    ) -> dict[int, StoredEvent]:
        """The events at ``seqs`` that are still stored, by seq (the index's bodies), from
        the archive for archived seqs, from the stream for the others; ``ts``, each seq's
        event time (the index has it), lets the archive pick row groups by time."""
        if not seqs:
            return {}
        archive = self.archive
        if archive is None:
            return await self._stream_fetch(seqs)
        top = archive.archived_upto()
        out = await self._stream_fetch([s for s in seqs if s > top])
        missing = [s for s in seqs if s > top and s not in out]
        if missing:  # archived since this process read the manifest?
            await asyncio.to_thread(archive.refresh)
            top = archive.archived_upto()
        old = [i for i, s in enumerate(seqs) if s <= top and s not in out]
        if old:
            old_seqs = [seqs[i] for i in old]
            old_ts = None if ts is None else [ts[i] for i in old]
            out.update(await asyncio.to_thread(archive.retrying,
                                               lambda: archive.bodies(old_seqs, old_ts)))
        return out

    async def _stream_fetch(self, seqs: Sequence[int]) -> dict[int, StoredEvent]:
        if not seqs:
            return {}
        found = await self._call(self._fetch(seqs))
        return {seq: event for seq, (event, _) in found.items()}

    # -- the archive's hooks (blocking: from the archiver's thread) -------------------
    def stream_bounds(self) -> tuple[int, int]:
        async def info() -> tuple[int, int]:
            state = (await _jetstream(self._client, READ_TIMEOUT).stream_info(
                self._s.stream)).state
            self._note_seq(state.last_seq)
            return state.first_seq, state.last_seq

        return self._blocking(info())

    def index_upto(self, seq: int) -> None:
        """Index what the stream holds up to ``seq`` and the table lacks (an append that
        crashed after its PubAck), as the log's opening does up to the stream's end."""
        self._blocking(self._repair_index(self._table(), seq))

    def stream_bodies(self, seqs: Sequence[int]) -> dict[int, StoredEvent]:
        found = self._blocking(self._fetch(seqs))
        return {seq: event for seq, (event, _) in found.items()}

    def purge_upto(self, seq: int) -> None:
        """Purge every message up to ``seq`` (JetStream's purge below a sequence; the
        stream's last seq stays, so seqs are never reused)."""
        async def purge() -> None:
            await _jetstream(self._client, READ_TIMEOUT).purge_stream(self._s.stream,
                                                                      seq=seq + 1)

        self._blocking(purge())

    def stream_delete(self, seqs: Sequence[int]) -> None:
        if seqs:
            self._blocking(self._delete_stream(seqs), READ_TIMEOUT * (1 + len(seqs) // 100))

    def _blocking(self, coro: Coroutine[Any, Any, _T], timeout: float = READ_TIMEOUT * 4) -> _T:
        if self._stopped:
            coro.close()
            raise StorageUnavailable("the log is closed")
        return self._on_loop(coro).result(timeout)

    # -- retention -------------------------------------------------------------------
    def _table(self) -> LogTable:
        if self._dedupe is None:
            raise NotImplementedError("retention on the JetStream log needs its table")
        return self._dedupe

    async def _delete(self, seqs: Sequence[int]) -> None:
        """Delete ``seqs`` from the log (the archive's files written again without the
        archived ones); one already gone is not an error (a retry of a step that crashed
        after the log's half)."""
        if self.archive is not None:
            await asyncio.to_thread(self.archive.delete, seqs)
            return
        await self._delete_stream(seqs)

    async def _delete_stream(self, seqs: Sequence[int]) -> None:
        js = _jetstream(self._client, READ_TIMEOUT)
        for seq in seqs:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_msg(self._s.stream, seq)
            self._deleted.add((seq,))

    async def _expire(self, source_id: str, before_ms: int, limit: int) -> Expiry:
        table = self._table()
        seqs = await table.expirable(source_id, before_ms, limit)
        await self._delete(seqs)
        owners = await table.forget_expired(source_id, before_ms, seqs)
        return Expiry(len(seqs), len(seqs) < limit, owners)

    async def expire(self, source_id: str, before_ms: int, *, limit: int = 10_000) -> Expiry:
        """The index names the source's events that arrived before ``before_ms``; they are
        deleted from the stream, then their index rows go and their keys are marked
        expired in one transaction. A crash between the two leaves the rows, and the next
        call deletes (already gone) and forgets them: idempotent."""
        return await self._call(self._expire(source_id, before_ms, limit))

    async def expired(self, window: Window) -> list[Expired]:
        return await self._call(self._table().expired(window))

    def delete(self, seqs: Sequence[int]) -> None:
        """Delete ``seqs`` from the stream, blocking (from any thread but the log's); their
        index rows are the caller's (the eraser's)."""
        if self._stopped:
            raise StorageUnavailable("the log is closed")
        if self.archive is not None:  # this thread writes the files again
            self.archive.delete(seqs)
            return
        self._on_loop(self._delete(seqs)).result(READ_TIMEOUT * (1 + len(seqs) // 100))

    def stream_size(self) -> tuple[int, int]:
        """(bytes, messages) the stream holds now, blocking (status pages)."""
        async def info() -> tuple[int, int]:
            state = (await _jetstream(self._client, READ_TIMEOUT).stream_info(
                self._s.stream)).state
            return state.bytes, state.messages

        if self._stopped:
            raise StorageUnavailable("the log is closed")
        return self._on_loop(info()).result(READ_TIMEOUT + 1)

    def stream_state(self) -> StreamState:
        """The stream as its leader sees it, blocking (``millpond cluster status``)."""
        async def info() -> StreamState:
            found = await _jetstream(self._client, READ_TIMEOUT).stream_info(self._s.stream)
            cluster, state = found.cluster, found.state
            replicas = [] if cluster is None else [
                {"name": p.name, "current": bool(p.current), "offline": bool(p.offline),
                 "lag": p.lag or 0, "active_seconds": p.active}
                for p in cluster.replicas or []]
            return StreamState(
                name=self._s.stream, messages=state.messages, bytes=state.bytes,
                first_seq=state.first_seq, last_seq=state.last_seq,
                replicas=found.config.num_replicas or 1,
                leader=None if cluster is None else cluster.leader, followers=replicas)

        if self._stopped:
            raise StorageUnavailable("the log is closed")
        return self._on_loop(info()).result(READ_TIMEOUT + 1)

    # -- waiting ---------------------------------------------------------------------
    def _note_seq(self, seq: int) -> None:
        with self._lock:
            if seq <= self._last_seq:
                return
            self._last_seq = seq
            waiters, self._waiters = self._waiters, []
        _wake(waiters)

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
            if not self._stopped and not self._released:
                with contextlib.suppress(Exception):
                    await self._call(self._refresh())
        return self._last_seq

    def last_seq(self) -> int:
        return self._last_seq

    def release_waiters(self) -> None:
        with self._lock:
            self._released = True
            waiters, self._waiters = self._waiters, []
        _wake(waiters)

    # -- closing ---------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            in_flight = list(self._in_flight)
        for future in in_flight:  # they resolve (acked, or failed at their deadline)
            with contextlib.suppress(Exception):
                future.result(self._s.publish_deadline + 5)
        self.release_waiters()
        self._stop_loop()

    def _stop_loop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._dedupe is not None:
            with contextlib.suppress(Exception):
                self._on_loop(self._dedupe.close()).result(10)
        if self._nc is not None:
            with contextlib.suppress(Exception):
                self._on_loop(self._nc.close()).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def _row(seq: int, e: NewEvent) -> Indexed:
    return (seq, e.source_id, e.message_id, e.type, e.event_name, e.user_id, e.anonymous_id,
            e.ts_ms, e.received_ms)


def _with_index(msg: Msg) -> tuple[StoredEvent, str | None]:
    return stored_event(msg), (msg.headers or {}).get(INDEX_HEADER)


def _without_index(msg: Msg) -> tuple[StoredEvent, str | None]:
    return stored_event(msg), None


def _indexed(e: StoredEvent, raw: str | None) -> Indexed | None:
    """The index row a stored message carries in its header (None: a message without
    one, stored before the header existed)."""
    if raw is None:
        return None
    source_id, message_id, kind, name, user_id, anonymous_id, received = json.loads(raw)
    return (e.seq, source_id, message_id, kind, name, user_id, anonymous_id, e.ts_ms,
            received)


def _seconds(value: float) -> Any:
    """A duration for nats-py options annotated ``int`` that take any number (they are
    passed to ``asyncio.sleep`` and ``wait_for``)."""
    return value


def _wake(waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]) -> None:
    for loop, fut in waiters:
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
            loop.call_soon_threadsafe(_resolve, fut)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
