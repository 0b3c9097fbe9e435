"""What every storage backend promises: the seam between millpond and where data lives.

Nothing outside ``millpond.storage`` knows which backend it talks to; it gets a
:class:`Storage` from :func:`millpond.storage.open_storage` and uses these contracts.
Each method says what callers may rely on (durable on return? idempotent? which errors?),
and ``tests/storage/contract/`` checks every backend against exactly these promises: a
new backend is done when that suite passes unchanged.

Errors every method may raise besides the ones it names: :class:`StorageUnavailable`
(transient: the disk is full, the database is unreachable; retry later) and, for
programming errors, whatever Python raises.

Which methods are ``async``: the ones a network backend must await (the log on NATS
JetStream, the index on PostgreSQL). State stores are synchronous: they are called a few
times per request or checkpoint, and a network backend runs them on its connection pool;
callers on the event loop run checkpoints in a worker thread.
"""

from __future__ import annotations

from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from concurrent.futures import Future
from typing import Any, Protocol

from millpond.errors import MillpondError
from millpond.storage.health import StorageHealth
from millpond.storage.models import (
    AppendResult,
    CountKey,
    DeadLetter,
    DeadLetterState,
    Destination,
    EventQuery,
    Expired,
    Expiry,
    ImportJob,
    Lease,
    Member,
    MembershipChange,
    MembersPage,
    NewEvent,
    OutcomePage,
    PeoplePage,
    ProcessInfo,
    Regulation,
    Rejection,
    Run,
    RunKind,
    RunState,
    Segment,
    Source,
    StoredEvent,
    TableLoadStats,
    Tier,
    Window,
    WindowCursor,
    WindowPart,
)


class StorageUnavailable(MillpondError):
    """The store cannot take the operation now (disk full, connection lost): retry later.
    Nothing was changed."""

    status = 503
    code = "storage_unavailable"

    def __init__(self, message: str, retry_after: float = 5.0):
        super().__init__(message)
        self.retry_after = retry_after


# -- the event log ---------------------------------------------------------------------


class EventLog(Protocol):
    """The append-only, deduplicating log of events.

    - ``seq`` increases strictly in commit order and is never reused; gaps are allowed
      (retention and deletion remove events, a backend may skip numbers);
    - a stored event never changes;
    - dedupe is forever and per source: a ``messageId`` a source already stored is
      acknowledged and not stored again, however long ago it was stored.
    """

    async def append(self, events: Sequence[NewEvent]) -> AppendResult:
        """Store ``events`` durably; return each one's ``seq`` (None: a duplicate).

        Durable on return: the events survive a process crash (and, with the embedded
        store's default ``synchronous=FULL``, a power loss). Idempotent per
        (``source_id``, ``message_id``). Raises :class:`~millpond.errors.Overloaded`
        (the log is behind: answer 503 + Retry-After), :class:`StorageUnavailable`."""
        ...

    def submit(self, events: Sequence[NewEvent]) -> Future[AppendResult]:
        """Queue ``events`` for appending from any thread and return at once.

        The future resolves exactly as :meth:`append` would return, only once the events
        are durable, or holds its exception. Submissions from one thread commit in order.
        Raises Overloaded here, at once, when the log cannot queue more. Lets a producer
        (an import) prepare its next batch while this one commits."""
        ...

    def dedupe_keyer(self) -> Callable[[str, str], int] | None:
        """A picklable function (source_id, message_id) -> :attr:`NewEvent.dedupe_key`,
        or None when the backend keeps no such key. Optional help for producers."""
        ...

    async def read(self, after_seq: int, limit: int, *, upto_seq: int | None = None,
                   types: frozenset[str] | None = None) -> list[StoredEvent]:
        """Up to ``limit`` events with ``after_seq < seq <= upto_seq`` (no upper bound when
        None), of ``types`` only when given, in ``seq`` order: the live feed, and the
        profile follower's (the type filter runs inside the store).

        A read sees every such event committed before it was called and none removed
        before then (retention, erasure), so fewer than ``limit`` means no more are there
        yet: a backend that reads ahead for callers reading on from their last ``seq``
        must keep to that."""
        ...

    def read_all(self, upto_seq: int, chunk: int = 20_000) -> AsyncIterator[list[StoredEvent]]:
        """Every event with ``seq <= upto_seq``, each once, in chunks, in no promised order:
        for work over the whole log that needs no order (a segment build's scan, the
        segment follower's start). What :meth:`read` sees, this sees.

        Why not :meth:`read` page after page: an archived file is sorted by event time,
        and a read by seq decodes every row group holding one of its seqs (all of them,
        when events arrived out of event order): a million archived events took 22 s by
        seq, 0.9 s a row group at a time (``ArchiveReader.scan_file``)."""
        ...

    async def get(self, seq: int) -> StoredEvent | None:
        """The event stored under ``seq``, or None (never stored, or removed)."""
        ...

    async def find(self, source_id: str, message_id: str) -> StoredEvent | None:
        """The event ``source_id`` stored with ``message_id``, or None."""
        ...

    async def wait(self, after_seq: int, timeout: float) -> int:
        """Return as soon as an event after ``after_seq`` is committed, or after
        ``timeout`` seconds, or at once after :meth:`release_waiters`: the last seq."""
        ...

    def last_seq(self) -> int:
        """The highest committed ``seq`` (0 for an empty log). Cheap: no I/O."""
        ...

    async def expire(self, source_id: str, before_ms: int, *, limit: int = 10_000) -> Expiry:
        """Retention: remove up to ``limit`` events of ``source_id`` whose arrival
        (``received_ms``) is before ``before_ms``, and nothing else, in one transaction;
        ``done`` once none is left (call again until then); ``owners``: whose events
        this call removed (the segment engine evaluates them again without them).

        Durable on return; idempotent. The removed events' ``messageId`` values stay
        deduped forever (a later copy is a duplicate listed in
        :attr:`AppendResult.expired`), and the store remembers how many it removed per
        source and hour of event time, and the latest ``before_ms`` per source, for
        :meth:`expired`."""
        ...

    async def expired(self, window: Window) -> list[Expired]:
        """Per source of ``window`` (every source when its ``source_ids`` is None) that
        retention removed events of: how many of those had an event time in an hour the
        window touches (whole hours: exact for windows on hour bounds, an upper bound
        otherwise), and the arrival time before which the source keeps nothing. Sources
        with nothing removed are left out. A replay or preview says with it what it
        cannot find."""
        ...

    def release_waiters(self) -> None:
        """The server is stopping: every :meth:`wait`, now and later, returns at once."""
        ...

    def close(self) -> None:
        """Finish in-flight appends (their futures resolve), then release the store.
        Idempotent."""
        ...


# -- the event index -------------------------------------------------------------------


class PartScanner(Protocol):
    """An optional capability of an index: scanning parts of a window from *other
    processes*, for order-free work over large windows (a replay preview). Picklable."""

    def parts(self, window: Window, max_parts: int, min_events: int) -> list[WindowPart]:
        """Split ``window`` into at most ``max_parts`` parts of about ``min_events`` events
        or more (one part when it is small). Blocking."""
        ...

    def scan(self, part: WindowPart, window: Window,
             chunk: int = 5000) -> Iterator[list[tuple[int, bytes]]]:
        """``window``'s events inside ``part`` as ``(seq, body)`` rows (a
        :class:`StoredEvent` without its time), in chunks, in no promised order. Blocking;
        called in a worker process, which opens what it needs itself.

        Why bare tuples and not records: a preview worker reads every event of its part
        only to decode the body, and a record per row (and the time column it would
        carry) cost a few percent of the preview's time; a backend hands its rows over
        as its driver returns them."""
        ...


class EventScan(Protocol):
    """What :meth:`EventIndex.scan` returns: an async iterator of a window's chunks, and a
    way to stop early. (Spelled out: a Protocol may not subclass ``AsyncIterator`` before
    Python 3.12.)"""

    def __aiter__(self) -> AsyncIterator[list[StoredEvent]]: ...

    def __anext__(self) -> Awaitable[list[StoredEvent]]: ...

    def aclose(self) -> Awaitable[None]:
        """Stop reading (and whatever reads ahead); the iteration ends. Idempotent.
        (Not ``async def``: an async generator's ``aclose`` satisfies it too.)"""
        ...


class EventIndex(Protocol):
    """The log read by event time and by attributes (the embedded store: the same SQLite
    file; scale-out: PostgreSQL and the Parquet archive)."""

    def scan(self, window: Window, *, after: WindowCursor | None = None,
             chunk: int = 2000) -> EventScan:
        """``window``'s events in (``ts_ms``, ``seq``) order, in chunks of at most
        ``chunk``, strictly after ``after`` when given (a replay resumes from its cursor).
        A backend may read ahead; closing the iterator (``aclose``) stops it. Events
        appended to the window while it is scanned may or may not be seen."""
        ...

    async def count(self, window: Window) -> int:
        """How many events :meth:`scan` would yield for ``window``."""
        ...

    async def query(self, q: EventQuery) -> list[StoredEvent]:
        """Events matching ``q`` in ``seq`` order (descending if asked), at most
        ``q.limit``: the events API, the tester's look-ups."""
        ...

    def part_scanner(self) -> PartScanner | None:
        """The capability to scan parts in other processes, or None (then callers scan in
        process)."""
        ...

    async def person_events(self, ids: Sequence[str], *, before: WindowCursor | None = None,
                            limit: int = 50) -> list[StoredEvent]:
        """A person's activity log: the events whose ``userId`` is one of ``ids``, and
        those without a ``userId`` whose ``anonymousId`` is (an event with a user id is
        that user's, as in Segment), newest first in (``ts_ms``, ``seq``) order, strictly
        before
        ``before`` when given (the next page starts after the last one's position), at
        most ``limit``.

        Sees every event committed before the call. A page costs about the same on any
        log and for any person: backends keep a per-person index (the embedded store
        builds it off the append path and catches up before answering)."""
        ...

    async def count_person_events(self, ids: Sequence[str]) -> int:
        """How many events :meth:`person_events` would list in all for ``ids`` (events
        removed from the log may be counted until retention removes them from the
        index too)."""
        ...


# -- state stores ------------------------------------------------------------------------


class SourceStore(Protocol):
    """Sources, by id; names and write keys are unique among live sources. Every write is
    durable on return.

    Why deleted sources are kept as tombstones: the log keeps a deleted source's events,
    and what they are (replayable or not, which kind of source sent them) is a property of
    where they came from. A replay decides from the tombstone, so deleting a ``track``
    source never makes its events replayable; the event tester still finds them by
    ``messageId``. A tombstone is invisible to every other method: its write key is no
    longer accepted, and its name (and key) may be taken by a new source."""

    def create(self, source: Source) -> Source:
        """Insert; raises :class:`~millpond.errors.Conflict` (field ``name``) when the name
        is taken."""
        ...

    def get(self, ref: str) -> Source:
        """By id or name; raises :class:`~millpond.errors.NotFound` (field ``source``)."""
        ...

    def by_write_key(self, write_key: str) -> Source | None:
        """The source with this write key, or None. On the collector's hot path: a
        backend may answer from a cache it keeps current across processes within a
        second."""
        ...

    def by_site_id(self, site_id: str) -> Source | None:
        """The track source with this site id, or None (same caching note)."""
        ...

    def list(self) -> list[Source]:
        """All sources, oldest first."""
        ...

    def update(self, source: Source) -> Source:
        """Replace the stored record of ``source.id``; NotFound, or Conflict on a taken
        name."""
        ...

    def delete(self, source_id: str) -> Source:
        """Remove from the live sources and keep a tombstone (the record with
        ``deleted_at`` set, which is returned); NotFound. Its events stay in the log."""
        ...

    def deleted(self) -> list[Source]:
        """The tombstones of deleted sources (``deleted_at`` set), deleted first first."""
        ...


class DestinationStore(Protocol):
    """Configured destinations; names are unique. Durable on return."""

    def create(self, destination: Destination) -> Destination:
        """Insert; Conflict (field ``name``) when the name is taken."""
        ...

    def get(self, ref: str) -> Destination:
        """By id or name; NotFound (field ``destination``)."""
        ...

    def list(self) -> list[Destination]:
        """All destinations, oldest first."""
        ...

    def update(self, destination: Destination) -> Destination:
        """Replace the stored record of ``destination.id``; NotFound, Conflict."""
        ...

    def delete(self, destination_id: str) -> Destination:
        """Remove the configuration; NotFound. Its runs and dead letters stay."""
        ...


class RunStore(Protocol):
    """Delivery runs with their cursors and counters, and dead letters.

    One store for both because a checkpoint moves a run's cursor, adds to its counters
    and parks its new dead letters *atomically*: after any crash the three agree, so a
    restart resumes exactly where the counters and the dead-letter queue say it stopped.
    """

    def create(self, run: Run) -> Run:
        """Insert a new run (``run.id`` unique). Durable on return."""
        ...

    def get(self, run_id: str) -> Run:
        """NotFound (field ``id``) when there is no such run."""
        ...

    def list(self, destination_id: str | None = None, *,
             kinds: Iterable[RunKind] = (), states: Iterable[RunState] = ()) -> list[Run]:
        """Runs, oldest first, filtered by destination, kind and state when given."""
        ...

    def set_state(self, run_id: str, state: RunState, *, error: str | None = None,
                  report: Mapping[str, Any] | None = None) -> Run:
        """Change the state (``finished_at`` is set when it becomes completed, cancelled
        or failed), keeping the old error/report unless new ones are given. Durable.
        The caller checks the transition; NotFound."""
        ...

    def checkpoint(self, run_id: str, *, cursor: int | WindowCursor | None = None,
                   counts: Mapping[CountKey, int] | None = None,
                   dead: Sequence[DeadLetter] = (), scanned: int = 0,
                   redriven: Sequence[int] = (), durable: bool = True,
                   outcomes: Mapping[CountKey, Sequence[int]] | None = None) -> None:
        """Atomically: move the cursor (None: leave it), add the counter deltas and
        ``scanned``, store ``dead`` (new dead letters), mark the dead letters whose
        ids are in ``redriven`` as redriven, and record which events (seqs, in finishing
        order) ended with each key of ``outcomes`` (for :meth:`outcome_events`). All or
        nothing.

        ``durable=False`` allows the backend to skip its fsync: after a process crash
        nothing is lost, after a power loss the run may go back a few checkpoints (for
        progress that is cheaper to redo than to fsync, a replay's)."""
        ...

    def outcome_events(self, run_ids: Sequence[str], keys: Sequence[CountKey], *,
                       cursor: str | None = None, limit: int = 50) -> OutcomePage:
        """The seqs of the events that ended with any of ``keys`` in any of ``run_ids``
        (as recorded by checkpoints' ``outcomes``), most recently finished first, ``limit``
        a page; ``cursor`` is the previous page's ``next_cursor`` (BadRequest, field
        ``cursor``, when it is not one). Reads only the rows of those runs and keys: its
        cost grows with the page, not with the log. An event recorded under two of
        ``keys`` is listed twice."""
        ...

    def prune_outcomes(self, before: float, limit: int = 10_000) -> int:
        """Forget up to ``limit`` of the oldest outcome rows (the events behind the counts,
        as :meth:`outcome_events` lists them) written by checkpoints at or before
        ``before`` (Unix seconds); how many rows went. One short transaction: a caller
        wanting all of them calls again until fewer than ``limit`` went. Counters, cursors
        and dead letters are untouched (the counts stay exact; only the listing of
        their older events goes). Oldest first by write order: it stops at the first
        row written after ``before``."""
        ...

    def dead_letters(self, destination_id: str, *,
                     state: DeadLetterState | None = DeadLetterState.DEAD,
                     after_id: int = 0, limit: int = 100) -> list[DeadLetter]:
        """A destination's dead letters in id order after ``after_id`` (state None: any)."""
        ...

    def dead_letter(self, dead_letter_id: int) -> DeadLetter:
        """One dead letter; NotFound (field ``id``)."""
        ...

    def count_dead_letters(self, destination_id: str,
                           state: DeadLetterState = DeadLetterState.DEAD) -> int:
        ...

    def claim_dead_letters(self, destination_id: str,
                           ids: Sequence[int] | None) -> list[DeadLetter]:
        """Move ``dead`` rows (all of the destination's, or ``ids``) to ``redriving`` and
        return them ordered by seq, atomically. Raises NotFound (field ``ids``) naming ids
        of another destination or unknown, BadRequest (field ``ids``) naming ids not in
        state ``dead``; then nothing changes."""
        ...

    def release_dead_letters(self, ids: Sequence[int]) -> None:
        """Put ``redriving`` rows back to ``dead`` (a redrive that could not finish)."""
        ...

    def recover_dead_letters(self) -> int:
        """At start-up: every ``redriving`` row back to ``dead``; how many."""
        ...


class LoadStatsStore(Protocol):
    """Per-table totals of the warehouse and storage destinations' loads.

    Why stored and not kept by the loader: an analyst asks "how many rows went into
    ``order_completed``, and when was it last loaded" about the destination's whole life; a
    restart must not reset that to zero (the delivery counters survive restarts too)."""

    def add(self, destination_id: str, tables: Mapping[str, tuple[int, int]],
            at: float) -> None:
        """Add ``(rows, discards)`` to each table's totals and set its ``last_load`` to
        ``at``, all in one write; durable on return. Tables not named are left as they are."""
        ...

    def get(self, destination_id: str) -> dict[str, TableLoadStats]:
        """Totals per table name ({} for a destination that never loaded)."""
        ...

    def forget(self, destination_id: str) -> None:
        """Drop the destination's totals (it was deleted). Idempotent."""
        ...


class ImportJobStore(Protocol):
    """Server-side import jobs. Durable on return."""

    def create(self, job: ImportJob) -> ImportJob: ...

    def get(self, job_id: str) -> ImportJob:
        """NotFound (field ``id``)."""
        ...

    def list(self, limit: int = 100) -> list[ImportJob]:
        """Newest first."""
        ...

    def update(self, job: ImportJob) -> ImportJob:
        """Replace the stored record of ``job.id``; NotFound."""
        ...


class RejectionStore(Protocol):
    """Messages the collector refused inside accepted requests (diagnostics)."""

    def add(self, rejections: Sequence[Rejection]) -> None:
        """Store ``rejections`` (ids assigned in order). Durable on return."""
        ...

    def list(self, source_id: str | None, after_id: int, limit: int) -> list[Rejection]:
        """Oldest first after ``after_id``, of one source or all."""
        ...


class ProfileStore(Protocol):
    """Profiles built from identify, group and alias events; the rules are in
    :mod:`millpond.profiles` (a pure plan), the store only keeps the result.

    Its state is a function of the *set* of events applied: any order, any batching,
    any re-application give the same profiles."""

    def apply_many(self, events: Iterable[Mapping[str, Any]], *,
                   checkpoint: int | None = None) -> int:
        """Apply decoded events (each with ``seq``) in one transaction, together with the
        follower's ``checkpoint`` when given; return how many were profile events."""
        ...

    def get(self, any_id: str) -> dict[str, Any] | None:
        """The profile a user id, anonymous id or profile id belongs to, read in one
        snapshot, or None."""
        ...

    def get_many(self, any_ids: Sequence[str]) -> dict[str, dict[str, Any] | None]:
        """:meth:`get` for each of ``any_ids`` (id -> profile or None), all read in one
        snapshot with a few queries: the segment follower resolves thousands of ids a
        tick, and a snapshot and a query per id were a fifth of its time."""
        ...

    def search(self, query: str, *, after: str | None = None, limit: int = 50) -> PeoplePage:
        """People whose user id, anonymous id or a profile trait value matches ``query``
        (:func:`millpond.profiles.search.matches`: case-insensitive, the start of an id or
        value or of a word in a text value); every person when ``query`` is empty.

        A page of at most ``limit`` profiles (each as :meth:`get` returns it) in a stable
        order, and the cursor to pass as ``after`` for the next (None: no more). Sees
        every :meth:`apply_many` that returned before the call."""
        ...

    def checkpoint(self) -> int:
        """The last log seq recorded with the data (0 if none)."""
        ...

    def set_checkpoint(self, seq: int) -> None: ...


class SegmentStore(Protocol):
    """Segment definitions, each person's current membership, its history and the
    schedule of time-driven changes. Every write is durable on return, except that a
    backend may let a power loss take back the latest :meth:`apply` calls whole (rows,
    history and checkpoint together: the engine redoes them from the log).

    Memberships are derived data (the engine can rebuild them from the log), kept with
    the engine's log position (:meth:`checkpoint`) in the same transaction, so after a
    crash the two agree."""

    def create(self, segment: Segment) -> Segment:
        """Insert; Conflict (field ``key``) when the key is taken."""
        ...

    def get(self, ref: str) -> Segment:
        """By id or key; NotFound (field ``segment``)."""
        ...

    def list(self) -> list[Segment]:
        """All segments, oldest first."""
        ...

    def update(self, segment: Segment) -> Segment:
        """Replace the stored record of ``segment.id``; NotFound, Conflict on a taken key."""
        ...

    def delete(self, segment_id: str) -> Segment:
        """Remove the segment with its memberships, history and schedule; NotFound."""
        ...

    def apply(self, rows: Sequence[Member], *, drop: Sequence[tuple[str, str]] = (),
              checkpoint: int | None = None) -> list[MembershipChange]:
        """Atomically: remove the (segment id, person id) rows in ``drop`` (profiles
        merged into another), store each of ``rows`` as its person's current state in its
        segment, append a history entry for each whose ``member`` differs from the state
        stored before (none stored: not a member), and record ``checkpoint`` when given.
        Returns the history entries appended. Rows of segments that no longer exist are
        ignored. Idempotent: applying the same rows again appends nothing."""
        ...

    def member(self, segment_id: str, person_id: str) -> Member | None:
        """The stored state of a person in a segment, or None."""
        ...

    def rows(self, segment_id: str) -> list[Member]:
        """Every stored row of the segment, members or not, ordered by person id (what
        a rebuild compares its results with)."""
        ...

    def by_ids(self, ids: Sequence[str]) -> list[Member]:
        """Every stored row, of any segment, whose ``ids`` share one with ``ids``: the rows
        of all the profiles a merge joined; ordered by (segment id, person id)."""
        ...

    def members(self, segment_id: str, *, after: str | None = None,
                limit: int = 50) -> MembersPage:
        """The current members (``member`` true) by person id, after the cursor ``after``;
        ``next_cursor`` None when this is the last page."""
        ...

    def count_members(self, segment_id: str) -> int: ...

    def person_segments(self, person_id: str) -> list[Member]:
        """The segments the person is currently a member of, by segment id."""
        ...

    def history(self, person_id: str, segment_id: str | None = None) -> list[MembershipChange]:
        """The person's membership changes in the order they were stored."""
        ...

    def history_counts(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """How many history entries each (segment id, person id) of ``keys`` has (0 when
        none), in a few queries: an Audience event's messageId counts the person's
        earlier changes, and a read of each one's history cost a query per change."""
        ...

    def due(self, now_ms: int, limit: int = 1000) -> list[Member]:
        """Rows whose ``next_change_ms`` is at or before ``now_ms``, earliest first: the
        scheduler's work, found by an index, never by a scan of every person."""
        ...

    def next_due(self) -> int | None:
        """The earliest ``next_change_ms`` of any row, or None."""
        ...

    def checkpoint(self) -> int:
        """The engine's last log seq recorded with the data (0 if none)."""
        ...

    def retention_applied(self) -> dict[str, int]:
        """Per source, the retention cutoff (``EventLog.expired``'s ``before_ms``) up to
        which the memberships reflect the events retention removed: a source whose log
        cutoff is later had events removed whose owners may not have been evaluated
        again (a stop or a failure in between)."""
        ...

    def set_retention_applied(self, source_id: str, before_ms: int) -> None:
        """Record :meth:`retention_applied` for ``source_id``; an earlier cutoff than the
        one stored changes nothing."""
        ...


class RegulationStore(Protocol):
    """Regulations (suppressions and deletions) with their per-store and per-destination
    status. Every write is durable on return: a deletion is a job resumed at start-up
    from what this store says is still pending."""

    def create(self, regulation: Regulation) -> Regulation:
        """Insert (``regulation.id`` unique)."""
        ...

    def get(self, regulation_id: str) -> Regulation:
        """NotFound (field ``id``) when there is no such regulation."""
        ...

    def list(self, limit: int = 100) -> list[Regulation]:
        """Newest first."""
        ...

    def update(self, regulation: Regulation) -> Regulation:
        """Replace the stored record of ``regulation.id``; NotFound."""
        ...


class LeaseStore(Protocol):
    """Leases and live processes shared by the processes of a scale-out cluster (only
    that backend has one: see :func:`millpond.storage.leases_of`). Time is the store's
    own clock, so hosts' clocks never decide who owns what."""

    def claim(self, names: Iterable[str], owner: str, ttl: float) -> set[str]:
        """Take (free or expired) or renew each lease for ``ttl`` s; the ones held after."""
        ...

    def release(self, names: Iterable[str], owner: str) -> None: ...

    def leases(self) -> list[Lease]: ...

    def heartbeat(self, process: ProcessInfo) -> None: ...

    def leave(self, process_id: str) -> None:
        """A clean stop: the process's row and every lease it holds go."""
        ...

    def processes(self, forget_after: float = 3600.0) -> list[ProcessInfo]: ...

    def publish(self, owner: str, statuses: Mapping[str, dict[str, Any]]) -> None:
        """Save what ``owner`` says of the work behind each lease name of ``statuses``
        (JSON), on the leases it holds (others are left alone): how any process shows a
        destination delivered by another one (:attr:`Lease.status`)."""
        ...

    def ask_retry(self, name: str) -> bool:
        """Ask the holder of lease ``name`` to end its wait for a next attempt now (a
        ``retry-now`` received by another process); False when nobody holds it."""
        ...

    def retry_requests(self, owner: str) -> set[str]:
        """The names of ``owner``'s leases asked :meth:`ask_retry` of since its last call;
        each request is answered once."""
        ...


class PersonEraser(Protocol):
    """Removes everything a backend keeps of some people, store by store: the deletion
    half of a regulation. ``ids`` are every user id and anonymous id of the people.

    Each method is idempotent (a job resumed after a crash runs it again: it removes
    what is left and counts only that) and durable on return, and returns how many
    records it removed. What is removed is gone for good: :meth:`scrub` makes the
    backend's files hold no copy of removed bytes (free pages, write-ahead logs)."""

    def event_owners(self, ids: Sequence[str]) -> dict[str, bool]:
        """Whose events :meth:`events` would remove, in :attr:`Expiry.owners`'s shape
        (each event's ``userId``, else its ``anonymousId`` -> whether it is a ``userId``);
        removes nothing. Why: what was derived from those events (segment memberships)
        must be computed again without them, and once they are gone nothing says whose
        they were. Among the owners may be people other than ``ids``'s own: another
        user's event sent with one of ``ids`` as its ``anonymousId`` (a shared device)
        goes too."""
        ...

    def events(self, ids: Sequence[str]) -> int:
        """Remove every event whose ``userId`` or ``anonymousId`` is one of ``ids`` from
        the log and every index over it (the per-person index included), leaving holes
        in ``seq``. The archive tier implements this by rewriting the files that held
        them."""
        ...

    def dead_letters(self, ids: Sequence[str]) -> int:
        """Remove dead letters of the people's events (found by their events' seqs, and
        by any of ``ids`` in the stored payload): call before :meth:`events`."""
        ...

    def rejections(self, ids: Sequence[str]) -> int:
        """Remove refused messages whose stored body names any of ``ids``."""
        ...

    def profiles(self, ids: Sequence[str]) -> int:
        """Remove the profiles any of ``ids`` belongs to, with their identities, traits,
        group memberships and search terms."""
        ...

    def segment_memberships(self, ids: Sequence[str]) -> int:
        """Remove the people's rows in every segment, their history and schedule."""
        ...

    def scrub(self) -> None:
        """Make removed records unrecoverable from the backend's files (the embedded
        store: secure delete, a truncating WAL checkpoint, VACUUM). May block a while."""
        ...


class Storage(Protocol):
    """One backend's stores, opened together by :func:`millpond.storage.open_storage`.

    The stores are read-only properties, not attributes: a backend's own store types
    (``SQLiteEventLog``) satisfy them, and nobody swaps a store on an open backend."""

    @property
    def log(self) -> EventLog: ...
    @property
    def index(self) -> EventIndex: ...
    @property
    def sources(self) -> SourceStore: ...
    @property
    def destinations(self) -> DestinationStore: ...
    @property
    def runs(self) -> RunStore: ...
    @property
    def load_stats(self) -> LoadStatsStore: ...
    @property
    def imports(self) -> ImportJobStore: ...
    @property
    def rejections(self) -> RejectionStore: ...
    @property
    def profiles(self) -> ProfileStore: ...
    @property
    def segments(self) -> SegmentStore: ...
    @property
    def regulations(self) -> RegulationStore: ...
    #: Deletion of people, store by store (see :class:`PersonEraser`).
    @property
    def eraser(self) -> PersonEraser: ...
    #: Whether writes succeed now: the backend reports each write it refuses with
    #: StorageUnavailable and each that commits, so a full disk is one episode, logged
    #: once, shown in stats and ``/metrics``.
    @property
    def health(self) -> StorageHealth: ...

    def sizes(self) -> dict[str, int]:
        """Bytes used per store, keyed by the backend's own name for each (the embedded
        store: its files), for start-up logs, status pages and metrics."""
        ...

    def tiers(self) -> list[Tier]:
        """The log's tiers (``hot``, then ``archive`` when the backend keeps one): bytes,
        events and event-time span of each, for ``millpond storage status``."""
        ...

    def close(self) -> None:
        """Close every store (the log last, after in-flight appends). Idempotent."""
        ...


__all__ = [
    "AppendResult", "CountKey", "DeadLetter", "DeadLetterState", "Destination",
    "DestinationStore", "EventIndex", "EventLog", "EventQuery", "EventScan", "Expired",
    "Expiry", "ImportJob", "ImportJobStore", "LoadStatsStore", "NewEvent", "PartScanner",
    "PeoplePage", "ProfileStore", "Rejection", "RejectionStore", "Run", "RunKind", "RunState",
    "RunStore", "Member", "MembersPage", "MembershipChange", "Segment", "SegmentStore",
    "Source", "SourceStore", "Storage", "StorageUnavailable", "StoredEvent", "TableLoadStats",
    "Window", "WindowCursor", "WindowPart",
]
