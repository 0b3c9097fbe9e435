"""The records storage keeps, shared by every backend and by the code that uses them.

Why msgspec Structs: events are built and read tens of thousands of times a second, where
a Struct costs less than a dataclass, and records cross process boundaries (an import's
reader process, a preview's workers) as msgpack. Everything here is plain data: no I/O,
no backend, no presentation (the services shape the public JSON).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

import msgspec

# -- events --------------------------------------------------------------------------


class NewEvent(msgspec.Struct, array_like=True, gc=False):
    """One validated message ready to append. ``body`` is its final JSON without ``seq``.

    It holds no containers, so the cyclic garbage collector need not track it; a batch
    crosses a process boundary as one msgpack array of arrays.

    ``dedupe_key`` is the backend's own key for (``source_id``, ``message_id``), filled by
    the function :meth:`EventLog.dedupe_keyer` returns, when the backend offers one, so
    a producer with a core to spare (an import's reader process) computes it there. It
    is opaque to everyone else; a backend recomputes a missing one.
    """

    source_id: str
    type: str
    message_id: str
    event_name: str | None
    user_id: str | None
    anonymous_id: str | None
    ts_ms: int
    received_ms: int
    body: bytes
    dedupe_key: int | None = None


class StoredEvent(msgspec.Struct, array_like=True, gc=False, frozen=True):
    """One event as the log keeps it: ``seq`` (arrival order), ``ts_ms`` (event time, Unix
    milliseconds) and ``body``, the event's JSON object as appended (without ``seq``)."""

    seq: int
    ts_ms: int
    body: bytes

    def json(self) -> bytes:
        """The body with ``seq`` as its first member: the stored event as the API shows it.

        A splice, not a decode and re-encode: ``body`` is always a JSON object."""
        return b'{"seq":%d,%s' % (self.seq, self.body[1:])


class AppendResult(msgspec.Struct):
    """What happened to each event of one append, in order: its ``seq``, or ``None`` when
    the source had already stored that ``messageId`` (a duplicate, acknowledged).

    ``expired`` lists the positions (indexes into the append) of duplicates whose first
    copy was stored and has since been removed by the source's retention: acknowledged,
    not stored again, and not in the log either, which an import reports as such."""

    seqs: list[int | None]
    expired: list[int] = msgspec.field(default_factory=list)

    @property
    def stored(self) -> int:
        return sum(1 for s in self.seqs if s is not None)

    @property
    def duplicates(self) -> int:
        return sum(1 for s in self.seqs if s is None)


class Window(msgspec.Struct, frozen=True):
    """An event-time window of the log: ``ts_from <= ts < ts_to`` (Unix ms), only events
    with ``seq <= max_seq`` (None: no bound), only ``source_ids`` (None: every source; an
    empty tuple: none)."""

    ts_from: int
    ts_to: int
    max_seq: int | None = None
    source_ids: tuple[str, ...] | None = None


class Expiry(msgspec.Struct, frozen=True):
    """What one :meth:`~millpond.storage.contracts.EventLog.expire` call removed:
    ``removed`` events; ``done`` when no event of the source older than the cutoff is
    left (else call again: each call is one bounded transaction); ``owners``: whose
    events they were, each removed event's ``userId``, else its ``anonymousId`` (as the
    per-person index files events), mapped to whether it is a ``userId``.

    Why the owners: what was derived from those events (segment memberships) must be
    derived again without them, and once removed the events cannot say whose they were.
    """

    removed: int
    done: bool
    owners: dict[str, bool] = {}

    def then(self, later: Expiry) -> Expiry:
        """This call's work and ``later``'s as one (a backend's tiers, hot then archived):
        ``done`` as ``later`` says, an owner a user id if either saw it as one."""
        owners = dict(self.owners)
        add_owners(owners, later.owners)
        return Expiry(self.removed + later.removed, later.done, owners)


def owners_of(pairs: Iterable[tuple[str | None, str | None]]) -> dict[str, bool]:
    """:attr:`Expiry.owners` from removed events' (``user_id``, ``anonymous_id``)."""
    owners: dict[str, bool] = {}
    for user_id, anonymous_id in pairs:
        if user_id:
            owners[user_id] = True
        elif anonymous_id:
            owners.setdefault(anonymous_id, False)
    return owners


def add_owners(into: dict[str, bool], more: Mapping[str, bool]) -> None:
    """Add ``more`` to ``into`` (id -> is a user id): seen once as a user id is enough."""
    for owner, is_user in more.items():
        into[owner] = into.get(owner, False) or is_user


class Expired(msgspec.Struct, frozen=True):
    """Events of one source that retention removed, as far as a window is concerned:
    ``events`` whose event time falls in the hours the window touches, and
    ``before_ms``, the arrival time before which that source keeps nothing."""

    source_id: str
    events: int
    before_ms: int


class Tier(msgspec.Struct, frozen=True):
    """One tier of the log (``hot``: the store appends go to; ``archive``: sealed ranges
    as Parquet): bytes on disk, events, and the event-time span (Unix ms; None when
    empty)."""

    name: str
    bytes: int
    events: int
    ts_min: int | None
    ts_max: int | None


class Lease(msgspec.Struct, frozen=True):
    """A lease of the scale-out backend: who holds ``name`` and for how many more seconds
    (negative: expired, free to take); ``acquired``: when this owner took it (Unix s).
    ``status``: what the owner last said of the work the lease guards (a destination's
    delivery state, :meth:`LeaseStore.publish`), ``status_age`` seconds ago; None before
    it said anything."""

    name: str
    owner: str
    expires_in: float
    acquired: float
    status: dict[str, Any] | None = None
    status_age: float | None = None


class ProcessInfo(msgspec.Struct, frozen=True):
    """A millpond process of a scale-out cluster, as it announces itself: its id, role
    (``all``, ``collector``, ``worker``), host, pid and URL; ``started`` (Unix s) and the
    seconds since its last heartbeat, as the state database saw them."""

    id: str
    role: str
    host: str
    pid: int
    url: str
    started: float = 0.0
    heartbeat_age: float = 0.0


class StreamState(msgspec.Struct, frozen=True):
    """The scale-out log's JetStream stream: its messages, bytes (one replica's), seqs,
    replicas, the node leading it and each follower (``name``, ``current``, ``offline``,
    ``lag`` in operations, ``active_seconds`` since it was last heard)."""

    name: str
    messages: int
    bytes: int
    first_seq: int
    last_seq: int
    replicas: int
    leader: str | None
    followers: list[dict[str, Any]]


class WindowCursor(msgspec.Struct, frozen=True, array_like=True):
    """A position in event-time order: a scan resumes strictly after (``ts``, ``seq``)."""

    ts: int
    seq: int


class WindowPart(msgspec.Struct, frozen=True):
    """A piece of a window (``after_seq < seq <= upto_seq``) that another process can scan
    on its own (:class:`~millpond.storage.contracts.PartScanner`); ``hint`` is the
    backend's own note on how to read it."""

    after_seq: int
    upto_seq: int
    hint: str = ""


class EventQuery(msgspec.Struct):
    """Filters for listing events (the API); every bound is optional, times Unix ms.

    Results are ordered by ``seq`` (``descending`` for newest first), at most ``limit``."""

    source_ids: list[str] | None = None
    types: list[str] | None = None
    event_name: str | None = None
    user_id: str | None = None
    ts_from: int | None = None
    ts_to: int | None = None
    received_from: int | None = None
    received_to: int | None = None
    after_seq: int | None = None
    before_seq: int | None = None
    descending: bool = False
    limit: int = 100


class PeoplePage(msgspec.Struct):
    """One page of a people search: the profiles (as ``ProfileStore.get`` shows them)
    and the cursor of the next page (None: this was the last)."""

    people: list[dict[str, Any]]
    next_cursor: str | None = None


class Rejection(msgspec.Struct):
    """A message refused inside an accepted request, kept so the owner can see why.
    ``id`` is assigned by the store (increasing)."""

    source_id: str
    index: int
    code: str
    reason: str
    field: str | None
    received_ms: int
    body: bytes
    id: int = 0


# -- configuration -----------------------------------------------------------------------


class Source(msgspec.Struct, frozen=True):
    """A source: where data comes in (see ``docs/architecture.md``)."""

    id: str
    name: str
    kind: str
    write_key: str
    replayable: bool
    site_id: str | None = None
    created_at: float = 0.0
    #: Origins a browser may send this source's events from; None: any origin.
    allowed_origins: tuple[str, ...] | None = None
    #: A disabled source's write key is refused (403) and its SDK settings answer 404.
    enabled: bool = True
    #: When it was deleted (Unix seconds): set only on tombstones
    #: (:meth:`~millpond.storage.contracts.SourceStore.deleted`), None for a live source.
    deleted_at: float | None = None
    #: How long its events are kept, counted from their arrival: ``"forever"`` or a
    #: duration such as ``"400d"`` (``millpond.retention.policy``).
    retention: str = "forever"


class Destination(msgspec.Struct, frozen=True):
    """A configured destination. ``settings`` are the raw (unmasked) values: the store
    keeps what the pump needs, and only presentation masks them.

    ``connected_seq`` is the log position when it was connected: its live run starts
    right after it, and replays by default end there (exactly once, replay plus live)."""

    id: str
    name: str
    type: str
    settings: dict[str, Any]
    rate_limit: dict[str, Any]
    actions: list[dict[str, Any]]
    enabled: bool
    connected_at: float
    connected_seq: int
    updated_at: float = 0.0


# -- delivery runs -------------------------------------------------------------------------


class RunKind(StrEnum):
    """What a delivery run reads: the live tail, a closed event-time window, or dead
    letters sent again."""

    LIVE = "live"
    REPLAY = "replay"
    REDRIVE = "redrive"


class RunState(StrEnum):
    """A run's state; the allowed moves are ``millpond.delivery.runs.TRANSITIONS``."""

    PLANNED = "planned"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


#: A counter key: (action, outcome, reason); action "" for event-level skips.
CountKey = tuple[str, str, str]


class OutcomePage(msgspec.Struct):
    """One page of the events behind a delivery count (``RunStore.outcome_events``): their
    seqs, most recently finished first, and the cursor of the next page (None: the last)."""

    seqs: list[int]
    next_cursor: str | None = None


class Run(msgspec.Struct):
    """One delivery run of one destination.

    ``cursor``: a live run's is the ``seq`` of the last finished event (an int); a
    replay's the :class:`WindowCursor` of the last finished event in its window; a
    redrive's stays None (its dead letters are marked as they finish). ``spec`` is the
    kind's plan as plain JSON (a replay's resolved request; a redrive's dead-letter ids),
    stored so a run resumed after a restart does exactly what it was given. ``counts``
    are its outcome counters, ``scanned`` how many events it has read past."""

    id: str
    destination_id: str
    kind: RunKind
    state: RunState
    spec: dict[str, Any] = msgspec.field(default_factory=dict)
    cursor: int | WindowCursor | None = None
    counts: dict[CountKey, int] = msgspec.field(default_factory=dict)
    scanned: int = 0
    error: str | None = None
    report: dict[str, Any] | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    finished_at: float | None = None


class DeadLetterState(StrEnum):
    """``dead`` → ``redriving`` (claimed by a redrive) → ``redriven``; a redrive that does
    not finish puts its claims back to ``dead``."""

    DEAD = "dead"
    REDRIVING = "redriving"
    REDRIVEN = "redriven"


class DeadLetter(msgspec.Struct):
    """An event one action of a destination could not deliver, with why. ``id`` is
    assigned by the store (global, increasing), 0 before."""

    destination_id: str
    run_id: str
    seq: int
    message_id: str | None
    action: str
    reason: str
    status: int | None = None
    response: str | None = None
    payload: Any = None
    created_at: float = 0.0
    state: DeadLetterState = DeadLetterState.DEAD
    redriven_at: float | None = None
    id: int = 0


class TableLoadStats(msgspec.Struct):
    """What one warehouse or storage destination has loaded into one of its tables, over
    its whole life (not since the server started): rows loaded, values or events discarded,
    and when the table last took a load (epoch seconds, None before the first)."""

    rows: int = 0
    discards: int = 0
    last_load: float | None = None


# -- imports -----------------------------------------------------------------------------


class ImportJob(msgspec.Struct):
    """A server-side import of an uploaded file. ``progress`` is the latest progress
    report while it runs (stored, so any process can show it)."""

    id: str
    source_id: str
    kind: str
    file: str
    state: str
    options: dict[str, Any]
    summary: dict[str, Any] | None = None
    error: str | None = None
    progress: dict[str, Any] | None = None
    created_at: float = 0.0
    updated_at: float = 0.0


# -- segments --------------------------------------------------------------------------


class Segment(msgspec.Struct):
    """A segment as saved: its definition as JSON (:mod:`millpond.segments.definition`
    parses it), ``state`` ``building`` until the build over the log reached
    ``build_upto_seq``, then ``ready``; ``build_phase`` (``scanning``: ``build_done`` /
    ``build_total`` are log seqs; ``evaluating``: people) for progress,
    ``build_started_ms`` (when the phase began) for the estimate."""

    id: str
    key: str
    name: str
    definition: dict[str, Any]
    state: str = "building"
    created_ms: int = 0
    updated_ms: int = 0
    build_upto_seq: int = 0
    build_done: int = 0
    build_total: int = 0
    build_started_ms: int = 0
    build_phase: str = ""


class Member(msgspec.Struct, frozen=True, gc=False):
    """A person's current state in one segment (kept when not a member: the state a
    later change is compared with). ``since_ms`` is the event time the state began,
    ``next_change_ms`` when time passing changes it (the schedule), ``ids`` the
    person's ids when written (a merge finds the rows of the profiles it joined).

    Untracked by the cyclic garbage collector (texts, numbers and a tuple of texts:
    no cycle can go through it): the segment follower keeps every row it has read in
    its row cache, and each full collection walked all of them."""

    segment_id: str
    person_id: str
    member: bool
    since_ms: int | None
    next_change_ms: int | None = None
    user_id: str | None = None
    anonymous_id: str | None = None
    ids: tuple[str, ...] = ()
    processed_ms: int = 0


class MembershipChange(msgspec.Struct, frozen=True):
    """One entry of a person's membership history: entered (``member``) or exited, at
    event time ``at_ms``, noticed at processing time ``processed_ms``."""

    segment_id: str
    person_id: str
    member: bool
    at_ms: int | None
    processed_ms: int


class MembersPage(msgspec.Struct):
    members: list[Member]
    next_cursor: str | None = None


# -- regulations -------------------------------------------------------------------------


class RegulationType(StrEnum):
    """What a regulation asks: stop keeping and sending a person's data from now on
    (``suppress``), remove what is kept and ask destinations to do the same (``delete``),
    both, or lift an earlier suppression."""

    SUPPRESS = "suppress"
    DELETE = "delete"
    SUPPRESS_WITH_DELETE = "suppress_with_delete"
    UNSUPPRESS = "unsuppress"


class StepStatus(msgspec.Struct):
    """Where one store or destination stands on a regulation: ``pending``, ``done``
    (``removed`` says how many records went), ``not_supported`` (``reason`` says why) or
    ``failed`` (``reason``, retried up to the job's limit; ``attempts`` so far)."""

    state: str = "pending"
    removed: int = 0
    reason: str | None = None
    attempts: int = 0
    updated_at: float = 0.0


class Regulation(msgspec.Struct):
    """One suppression or deletion request: who asked and when, the ids asked for and the
    whole profiles they resolved to (``ids``: every joined identity), and for a deletion
    its status per store and per destination, never one overall verdict. ``upto_seq`` is
    the log position when it was accepted: a deletion blocks the sending of the person's
    events up to there forever, so a replay reading ahead never sends them.
    ``suppressed`` counts the events refused because of it."""

    id: str
    type: RegulationType
    user_ids: list[str]
    anonymous_ids: list[str]
    ids: list[str]
    requested_by: str
    created_at: float
    upto_seq: int = 0
    #: ``active`` (a suppression in force), ``running`` (a deletion under way),
    #: ``finished`` (every step settled), ``lifted`` (an unsuppress ended it).
    state: str = "active"
    stores: dict[str, StepStatus] = msgspec.field(default_factory=dict)
    destinations: dict[str, StepStatus] = msgspec.field(default_factory=dict)
    suppressed: int = 0
    finished_at: float | None = None
    #: The ``unsuppress`` regulation that lifted this suppression, if one did.
    lifted_by: str | None = None
    #: ``ids`` split by kind (destinations delete user ids and anonymous ids apart).
    resolved_user_ids: list[str] = msgspec.field(default_factory=list)
    resolved_anonymous_ids: list[str] = msgspec.field(default_factory=list)
    #: Set once a finished deletion replaced every id above by its keyed digest
    #: (``blake2b:<hex>`` under this key): the audit can still tell whether an id was
    #: deleted, and no id of the person is kept (a suppression must keep its ids).
    redacted: str | None = None
    #: Whose events the deletion removes (``PersonEraser.event_owners``), read before it
    #: removes them and kept until the segments are evaluated again without them: a job
    #: resumed in between has no other way to know. Never shown.
    event_owners: dict[str, bool] | None = None
