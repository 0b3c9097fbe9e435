"""The admin API's request bodies and answers as msgspec types (DESIGN.md's resource shapes).

Why msgspec and not pydantic: the same people-friendly converter that checks destination
settings and ``ServerConfig`` (:mod:`millpond.validation`) checks these bodies, so every
refusal names the field as the API spells it, the value given and what would fit. The
OpenAPI document is generated from these types too (:mod:`millpond.api.schema`), so what
``/api/docs`` shows is what the server checks.

Requests refuse unknown fields; answers list their fields as required but allow more
(the shapes may grow without breaking clients). Checks that a type cannot express (a
trigger compiles, a replay's rate stays under the destination's, a source exists) stay
functions over these typed values, in the services.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from millpond.delivery.rate_limit import (
    MAX_EVENTS_PER_SECOND,
    MAX_IN_FLIGHT,
    MAX_REQUESTS_PER_SECOND,
)

#: SQLite integers (and every id or cursor the API hands out) fit in 64 signed bits.
MAX_INT = 2**63 - 1
Id = Annotated[int, Meta(ge=1, le=MAX_INT, description="an id the API handed out")]
Seq = Annotated[int, Meta(ge=1, le=MAX_INT, description="an event's position in the log")]
#: "Not blank": one character that is not white space, the same set in Python's ``re``
#: (which checks bodies) and in ECMA-262 (which JSON Schema's ``pattern`` means, and which
#: clients and schemathesis follow): Python's ``\s`` also holds U+001C-U+001F and U+0085,
#: ECMA's also U+FEFF, so all of them are excluded by name.
NOT_BLANK = r"[^\s\x1c-\x1f\x85\ufeff]"
Name = Annotated[str, Meta(min_length=1, max_length=100, pattern=NOT_BLANK,
                           extra={"expected": "a name of 1 to 100 characters, not blank"},
                           examples=["Mixpanel prod"])]
#: A time in a body: ISO 8601 text, relative text (``-7d``) or Unix seconds.
TimeBound = (Annotated[str, Meta(examples=["2024-01-01T00:00:00Z"])]
             | Annotated[float, Meta(ge=0, le=253402300799,
                                     description="Unix seconds")] | None)


class Request(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Base of request bodies: unknown fields are refused, defaults are not echoed."""


# -- errors -------------------------------------------------------------------------------


class ErrorDetail(Struct):
    code: Annotated[str, Meta(examples=["bad_request"])]
    message: str
    field: str | None = None


class ErrorBody(Struct):
    """Every failure: ``{"error": {"code", "message", "field"}}`` (DESIGN.md "Errors")."""

    error: ErrorDetail


# -- sources ------------------------------------------------------------------------------

_ORIGINS = ("Origins a browser may send this source's events from, e.g. "
            '["https://www.example.com", "https://*.example.com"]; null: any origin.')
_PORT = (r"(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]"
         r"|6553[0-5]))?")
_LABEL = r"[A-Za-z0-9-]+"
#: What :func:`millpond.sources.origins.normalize_origin` accepts, for the document and
#: the first check: scheme and host (a wildcard only before two more labels), a port.
ORIGIN_PATTERN = (rf"^[Hh][Tt][Tt][Pp][Ss]?://(\*\.{_LABEL}\.{_LABEL}(\.{_LABEL})*|"
                  rf"{_LABEL}(\.{_LABEL})*){_PORT}/?$")
Origin = Annotated[str, Meta(pattern=ORIGIN_PATTERN,
                             extra={"expected": "an origin (scheme and host, no path), e.g. "
                                    '"https://www.example.com" or "https://*.example.com"'})]
Origins = Annotated[list[Origin], Meta(description=_ORIGINS)] | None


_RETENTION = ('how long the source\'s events are kept, counted from their arrival: "forever" '
              'or a duration of at least 1h, e.g. "400d", "26w"')
Retention = Annotated[str, Meta(min_length=1, max_length=40, examples=["400d", "forever"],
                                description=_RETENTION)]


SourceName = Annotated[str, Meta(min_length=1, max_length=100, pattern=NOT_BLANK,
                                 extra={"expected": "a name of 1 to 100 characters, not blank"},
                                 examples=["web"])]


class SourceCreate(Request):
    name: SourceName
    kind: Literal["pipelines", "track", "import"] = "pipelines"
    replayable: bool | None = None
    allowed_origins: Origins = None
    enabled: bool = True
    retention: Retention = "forever"


class SourceUpdate(Request):
    name: SourceName | None = None
    replayable: bool | None = None
    #: Left out: unchanged; ``null``: any origin again.
    allowed_origins: Origins | UnsetType = UNSET
    enabled: bool | None = None
    retention: Retention | None = None


class SourceOut(Struct):
    id: str
    name: str
    kind: str
    write_key: str
    replayable: bool
    created_at: float
    allowed_origins: list[str] | None
    enabled: bool
    site_id: str | None = None
    retention: str = "forever"


class SourceList(Struct):
    sources: list[SourceOut]


class DeletedSource(Struct):
    deleted: SourceOut


class Snippet(Struct):
    source: str
    sdk: str
    form: str
    url: str
    text: str


# -- destinations -------------------------------------------------------------------------


#: A duration as :func:`millpond.timeutil.parse_duration` reads it ("72h", "1h30m").
DURATION = r"^\s*((\d+(\.\d+)?|\.\d+)\s*[smhdw]\s*)+$"


EventsPerSecond = Annotated[float, Meta(
    gt=0, le=MAX_EVENTS_PER_SECOND, examples=[1000],
    extra={"expected": f"a number above 0 and at most {MAX_EVENTS_PER_SECOND:g}"})]
RequestsPerSecond = Annotated[float, Meta(
    gt=0, le=MAX_REQUESTS_PER_SECOND, examples=[10],
    extra={"expected": f"a number above 0 and at most {MAX_REQUESTS_PER_SECOND:g}"})]


class RateLimitSpec(Request):
    """Left out: the type's default; ``requests_per_second: null``: no request limit."""

    events_per_second: EventsPerSecond | UnsetType = UNSET
    requests_per_second: RequestsPerSecond | None | UnsetType = UNSET
    #: Requests sent at once; a user's requests still go one at a time, in order.
    max_in_flight: Annotated[int, Meta(ge=1, le=MAX_IN_FLIGHT, examples=[16], extra={
        "expected": f"a whole number from 1 to {MAX_IN_FLIGHT} (requests sent at once)"})] \
        | UnsetType = UNSET
    #: The longest vendor ``Retry-After`` honoured (seconds); null: the default (300).
    max_retry_after: Annotated[float, Meta(ge=1, le=86_400, examples=[300], extra={
        "expected": "a number of seconds from 1 to 86400 (the longest vendor Retry-After "
                    "honoured, default 300)"})] | None | UnsetType = UNSET
    #: How long the destination may fail before it dead-letters what it holds: a
    #: duration ("4h") or seconds; null: the default (4h).
    max_retry_age: Annotated[str, Meta(pattern=DURATION, examples=["4h"])] | Annotated[float, Meta(
        ge=60, le=30 * 86_400, extra={"expected": "a duration of at least 1 minute, e.g. "
                                      '"4h" or "30m", or seconds (default 4h)'})] | None | \
        UnsetType = UNSET


class ActionConfig(Request):
    name: Annotated[str, Meta(min_length=1, max_length=100, pattern=NOT_BLANK,
                              extra={"expected": "a name of 1 to 100 characters, not blank"},
                              examples=["Orders"])]
    trigger: Annotated[str, Meta(examples=['type = "track"'],
                                 description="FQL: which events this action handles")]
    mapping: Annotated[Any, Meta(examples=[{"event": {"@path": "$.event"}}],
                                 description="the payload, from the event")]
    max_event_age: Annotated[str, Meta(examples=["72h"])] | None = None
    enabled: bool = True


class DestinationCreate(Request):
    name: Name
    type: Annotated[str, Meta(examples=["mixpanel"], description="a type of "
                              "/api/destination-types")]
    settings: dict[str, Any] | None = None
    rate_limit: RateLimitSpec | None = None
    #: Left out or null: the type's preset actions.
    actions: list[ActionConfig] | None = None
    enabled: bool = True


class DestinationPatch(Request):
    """Only the fields given change; ``actions: null`` goes back to the presets."""

    name: Name | UnsetType = UNSET
    type: str | UnsetType = UNSET
    settings: dict[str, Any] | None | UnsetType = UNSET
    rate_limit: RateLimitSpec | None | UnsetType = UNSET
    actions: list[ActionConfig] | None | UnsetType = UNSET
    enabled: bool | UnsetType = UNSET


class TestRequest(Request):
    """One of ``event``, ``message_id`` (optionally within ``source``) or ``seq``."""

    event: dict[str, Any] | UnsetType = UNSET
    message_id: Annotated[str, Meta(examples=["abc-123"])] | UnsetType = UNSET
    source: str | None = None
    seq: Seq | UnsetType = UNSET


class RateLimitOut(Struct):
    events_per_second: float | None
    requests_per_second: float | None = None


class ActionOut(Struct):
    name: str
    trigger: str
    mapping: Any
    max_event_age: str | None
    enabled: bool


class RetryNow(Struct):
    id: str
    name: str
    retried_now: bool
    message: str
    stats: DeliveryStats


class DestinationOut(Struct):
    id: str
    name: str
    type: str
    settings: dict[str, Any]
    rate_limit: dict[str, float | None]
    actions: list[ActionOut]
    enabled: bool
    connected_at: str
    connected_seq: int


class TableLoads(Struct):
    """One warehouse table or storage location: what the destination loaded into it over its
    whole life (stored; a restart keeps it). ``rows``: rows new to the table (``users`` /
    ``accounts``: rows whose values changed); ``discards``: values or events stored without
    what did not fit (each in ``millpond_discards`` with its reason); ``last_load``: epoch
    seconds."""

    rows: int
    discards: int
    last_load: float | None = None


class Loads(Struct):
    """Warehouse and storage destinations only: their loads, per table (stored). ``loads``
    and ``last_error`` are this server process's."""

    loads: int
    last_load: float | None
    seconds_since_last_load: float | None
    last_error: str | None
    lag_seconds: float
    tables: dict[str, TableLoads]


class DeliveryStats(Struct):
    """Counts by outcome and action, the sender's state and how far behind the log it is.

    On a cluster, a process that does not deliver the destination shows the state the one
    that does (``delivered_by``) published ``state_age`` seconds ago (``elsewhere``
    until it has published)."""

    state: str
    cursor: int
    events_behind: int
    lag_seconds: float
    dead_letters_waiting: int
    sent: int
    skipped: dict[str, int]
    dead_lettered: int
    retried: int
    actions: dict[str, Any]
    last_error: str | None = None
    loads: Loads | None = None
    delivered_by: str | None = None
    state_age: float | None = None


class DestinationFull(DestinationOut):
    stats: DeliveryStats


class DestinationList(Struct):
    destinations: list[DestinationFull]


class DestinationStatsOut(Struct):
    id: str
    name: str
    stats: DeliveryStats


class DeletedDestination(Struct):
    deleted: DestinationOut


class DestinationTypes(Struct):
    types: list[dict[str, Any]]


class TestResult(Struct):
    """What each action would do with the event: matched, outcome, payload, request."""

    destination: str
    outcome: str
    reason: str | None
    event: dict[str, Any]
    actions: list[dict[str, Any]]


# -- dead letters -------------------------------------------------------------------------


class RedriveRequest(Request):
    """Left out: every dead letter of the destination."""

    ids: list[Id] | None = None


class DeadLetterOut(Struct):
    id: int
    destination_id: str
    seq: int
    message_id: str | None
    action: str
    reason: str
    status: int | None
    response: str | None
    payload: Any
    created_at: str | None
    state: Literal["dead", "redriving", "redriven"]
    redriven_at: str | None


class DeadLetterPage(Struct):
    dead_letters: list[DeadLetterOut]
    next_cursor: int | None


class EventBehind(Struct):
    seq: int
    event: dict[str, Any] | None


class EventsBehind(Struct):
    """The events behind one count of a destination's delivery funnel, newest first
    (``event`` is null for an event the log no longer holds)."""

    destination: str
    run: str
    step: Literal["received", "matched", "mapped", "sent", "skipped", "dead_lettered"]
    action: str
    reason: str | None
    events: list[EventBehind]
    next_cursor: str | None
    #: How long the events behind a count stay listed (``delivery.outcome_retention_days``).
    kept_days: int
    #: The run is older than that: the count includes events no longer listed.
    older_unlisted: bool


class RetryingEvent(Struct):
    """One event (and action) a destination holds for a next attempt now."""

    seq: int
    message_id: str | None
    action: str
    #: ``live`` (live delivery and redrives) or the replay's id.
    run: str
    #: Failed attempts so far, when the first failed and when the next is due (Unix s).
    attempts: int
    failing_since: float
    next_attempt_at: float
    #: The vendor's last answer: the failure as classified, its HTTP status (null: no
    #: answer, such as a refused connection) and the start of its body.
    reason: str
    status: int | None
    response: str | None
    event: dict[str, Any] | None


class RetryingEvents(Struct):
    """What a destination's pumps hold for a next attempt right now (a gauge: an event
    leaves it when it ends, sent or dead-lettered, and is then counted under that
    outcome). ``total`` counts them, ``events`` are the first ``limit`` by seq;
    ``retry_attempts`` is the run's counter of failed attempts (times items) so far."""

    destination: str
    run: str
    action: str | None
    total: int
    retry_attempts: int
    events: list[RetryingEvent]


class RefusedRedrive(Struct):
    id: int
    reason: str


class RedriveOut(Struct):
    redriving: int
    ids: list[int]
    refused: list[RefusedRedrive]


# -- replays ------------------------------------------------------------------------------


class ReplayRequest(Request, rename={"from_": "from"}):
    destination: Annotated[str, Meta(min_length=1, examples=["Amplitude"],
                                     description="a destination name or id")]
    sources: Annotated[list[str], Meta(min_length=1, examples=[["web"]])] | None = None
    from_: TimeBound = None
    to: TimeBound = None
    filter: Annotated[str, Meta(examples=['type = "track"'])] | None = None
    rate: EventsPerSecond | None = None
    dry_run: bool = False
    include_live: bool = False


class ReplayOut(Struct):
    """A replay or, with ``dry_run``, its preview (``id`` null, ``preview`` set)."""

    id: str | None
    state: str
    destination: str
    destination_name: str
    sources: list[dict[str, str]]
    excluded_sources: list[dict[str, str]]
    window: dict[str, Any]
    filter: str | None
    include_live: bool
    rate: float
    estimate: dict[str, Any]
    dry_run: bool = False
    preview: dict[str, Any] | None = None
    destination_deleted: bool = False
    #: Why a replay is paused, cancelled or failed.
    reason: str | None = None
    progress: dict[str, Any] | None = None
    current_rate: float | None = None
    eta_seconds: float | None = None
    cursor: dict[str, int] | None = None
    error: str | None = None
    report: dict[str, Any] | None = None
    created_at: float | None = None
    finished_at: float | None = None
    #: Per source, what retention deleted of the window (events, the retention, the
    #: arrival time before which nothing is kept, and the reason in words).
    out_of_retention: list[dict[str, Any]] = msgspec.field(default_factory=list)


class StorageTier(Struct):
    name: str
    bytes: int
    events: int
    #: Event-time span (None when the tier is empty).
    from_: str | None = msgspec.field(name="from", default=None)
    to: str | None = None
    bytes_per_event: float | None = None


class StorageStatus(Struct):
    tiers: list[StorageTier]


class ClusterProcess(Struct):
    """A millpond process of the cluster: ``heartbeat_age`` seconds since it last said it
    was alive (a killed one stays listed, ageing, for an hour)."""

    id: str
    role: str
    host: str
    pid: int
    url: str
    started: float
    heartbeat_age: float


class ClusterLease(Struct):
    """``destination:<id>`` or ``jobs``: its owner (a process id) and the seconds left
    (negative: expired, free to take)."""

    name: str
    owner: str
    expires_in: float
    acquired: float


class ClusterStream(Struct):
    name: str
    messages: int
    bytes: int
    first_seq: int
    last_seq: int
    replicas: int
    leader: str | None
    followers: list[dict[str, Any]]


class ClusterDestination(Struct):
    """A destination's delivering process (the lease owner) and its lag from its saved
    cursor."""

    id: str
    name: str
    enabled: bool
    owner: str | None
    cursor: int
    events_behind: int
    lag_seconds: float


class ClusterStatus(Struct):
    """``clustered`` false (and the rest empty) on the embedded store."""

    clustered: bool
    place: str | None
    processes: list[ClusterProcess]
    leases: list[ClusterLease]
    stream: ClusterStream | None
    destinations: list[ClusterDestination]


class ReplayList(Struct):
    replays: list[ReplayOut]


# -- events, rejections -------------------------------------------------------------------


class EventPage(Struct):
    """Stored events as received (with ``messageId``, ``receivedAt`` and ``seq``)."""

    events: list[dict[str, Any]]
    next_cursor: Annotated[str, Meta(pattern=r"^\d+$")] | None


class RejectionOut(Struct):
    id: int
    source_id: str
    received_ms: int
    index: int
    code: str
    reason: str
    field: str | None
    body: str


class RejectionPage(Struct):
    rejections: list[RejectionOut]
    next_cursor: str | None


# -- imports, people ----------------------------------------------------------------------


class ImportOut(Struct):
    id: str
    source_id: str
    kind: str
    file: str
    state: str
    progress: dict[str, Any] | None
    summary: dict[str, Any] | None
    error: str | None
    created_at: float


class ImportList(Struct):
    imports: list[ImportOut]


class Person(Struct):
    """A profile with each trait's time and source (``millpond.profiles.shape``)."""

    id: str
    user_id: str | None
    user_ids: list[str]
    anonymous_ids: list[str]
    traits: dict[str, Any]
    trait_times: dict[str, Any]
    trait_sources: dict[str, Any]
    cleared_traits: Any
    groups: Any


class PeoplePage(Struct):
    """People matching a query (``GET /api/people``), a page at a time."""

    people: list[dict[str, Any]]
    next_cursor: str | None


# -- segments -----------------------------------------------------------------------------

SegmentKey = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", examples=["recent-buyers"],
                                 extra={"expected": "lowercase letters, digits, '-' or '_'"})]
SegmentName = Annotated[str, Meta(min_length=1, max_length=200, pattern=NOT_BLANK,
                                  extra={"expected": "a name of 1 to 200 characters, not blank"},
                                  examples=["Recent buyers"])]
#: A segment definition: checked by :mod:`millpond.segments.definition`, whose messages
#: name the condition at fault (``definition.all[1].op``).
Definition = Annotated[dict[str, Any], Meta(
    examples=[{"event": "Order Completed", "at_least": 2, "within": "30d"}],
    extra={"expected": "a condition (a JSON object)"})]


class SegmentCreate(Request):
    key: SegmentKey
    definition: Definition
    name: SegmentName | UnsetType = UNSET


class SegmentPatch(Request):
    """The key cannot change; a new definition rebuilds the segment."""

    name: SegmentName | UnsetType = UNSET
    definition: Definition | UnsetType = UNSET


class SegmentPreview(Request):
    definition: Definition
    key: SegmentKey | UnsetType = UNSET
    #: A user id, anonymous id or profile id: the answer then says why they are in it or not.
    person: str | UnsetType = UNSET


class SegmentOut(Struct):
    """A segment (``progress`` while ``state`` is ``building``)."""

    id: str
    key: str
    name: str
    definition: dict[str, Any]
    state: Literal["building", "ready"]
    members: int
    created_at: str | None = None
    progress: dict[str, Any] | None = None


class SegmentList(Struct):
    segments: list[SegmentOut]


class SegmentMember(Struct):
    id: str
    user_id: str | None
    anonymous_id: str | None = None
    since: str | None = None


class SegmentMembersPage(Struct):
    state: Literal["building", "ready"]
    people: list[SegmentMember]
    next_cursor: str | None


class SegmentPreviewWhy(Struct):
    """Why the ``person`` asked about is (or is not) in the previewed segment."""

    person: str
    member: bool
    since: str | None
    next_change: str | None
    conditions: Any


class SegmentPreviewOut(Struct):
    """``count`` members now among ``people_evaluated`` (everyone in the log); ``why``:
    for the ``person`` asked about, if any."""

    count: int
    people_evaluated: int
    sample: list[dict[str, Any]]
    why: SegmentPreviewWhy | None = None


class SegmentWhy(Struct):
    """Why a person is (or is not) in a segment: each condition with its value."""

    person: str
    segment: str
    state: Literal["building", "ready"]
    member: bool
    since: str | None
    next_change: str | None
    conditions: Any
    history: list[dict[str, Any]]


class DeletedSegment(Struct):
    deleted: str
    key: str


# -- regulations --------------------------------------------------------------------------

PersonId = Annotated[str, Meta(min_length=1, max_length=255, pattern=NOT_BLANK,
                               description="a user id or anonymous id as the SDK sent it")]


class RegulationCreate(Request):
    """Suppress, delete (or both), or lift a suppression of the people these ids belong
    to (each whole profile: every identity joined by identify or alias)."""

    type: Literal["suppress", "delete", "suppress_with_delete", "unsuppress"]
    user_ids: Annotated[list[PersonId], Meta(max_length=1000)] = msgspec.field(
        default_factory=list)
    anonymous_ids: Annotated[list[PersonId], Meta(max_length=1000)] = msgspec.field(
        default_factory=list)
    #: Who asked, for the audit (an email, a ticket); the API's caller when left out.
    requested_by: Annotated[str, Meta(min_length=1, max_length=200)] | UnsetType = UNSET


class StepOut(Struct):
    """One store's or destination's status: ``pending``, ``done`` (``removed``: records
    or requests), ``not_supported`` (``reason``) or ``failed`` (``reason``, ``attempts``)."""

    state: Literal["pending", "done", "not_supported", "failed"]
    removed: int
    attempts: int
    reason: str | None = None
    updated_at: str | None = None


class RegulationOut(Struct):
    """A regulation with its audit (who asked, when) and, for a deletion, its status per
    store and per destination (by destination id, with ``name``)."""

    id: str
    type: Literal["suppress", "delete", "suppress_with_delete", "unsuppress"]
    state: Literal["active", "running", "finished", "lifted"]
    user_ids: list[str]
    anonymous_ids: list[str]
    ids: list[str]
    requested_by: str
    created_at: str
    suppressed: int
    stores: dict[str, StepOut]
    destinations: dict[str, dict[str, Any]]
    finished_at: str | None = None
    lifted_by: str | None = None


class RegulationList(Struct):
    regulations: list[RegulationOut]


ALL: tuple[type[Struct], ...] = (
    ErrorBody, SourceCreate, SourceUpdate, SourceOut, SourceList, DeletedSource, Snippet,
    DestinationCreate, DestinationPatch, TestRequest, DestinationOut, DestinationFull,
    DestinationList, DestinationStatsOut, RetryNow, DeletedDestination, DestinationTypes,
    TestResult,
    RedriveRequest, DeadLetterPage, DeadLetterOut, RedriveOut, EventsBehind, RetryingEvents,
    ReplayRequest,
    ReplayOut,
    ReplayList, EventPage, RejectionPage, ImportOut, ImportList, Person, PeoplePage,
    SegmentCreate, SegmentPatch, SegmentPreview, SegmentOut, SegmentList, SegmentMembersPage,
    SegmentPreviewOut, SegmentWhy, DeletedSegment, StorageTier, StorageStatus,
    RegulationCreate, RegulationOut, RegulationList, ClusterStatus,
)


def to_dict(value: Struct) -> dict[str, Any]:
    """The fields given (UNSET left out), as plain JSON values for the services."""
    return msgspec.to_builtins(value)

