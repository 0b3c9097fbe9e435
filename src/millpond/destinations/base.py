"""The contract between the pump and every destination type.

A destination type is a *request builder and response classifier*. It never
does I/O and never retries: the pump owns the HTTP client, rate limits,
batching, retries and dead letters. That split keeps every vendor module a
pure function of (settings, mapped payloads) -> request and
(status, headers, body) -> outcome, which is what the compliance test checks
and what makes a destination testable without a network.

One table decides which HTTP answers are retryable (`classify_status`):
408, 425, 429 and 5xx are transient (`Retry`, honouring `Retry-After`); any
other non-2xx answer is terminal (`Reject`, the event goes to the dead-letter
queue with the vendor's text). Vendor modules override `classify` only where
their documentation differs, citing `/work/shared/vendors.md`.
"""

from __future__ import annotations

import email.utils
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from millpond.destinations import settings as _settings
from millpond.destinations.errors import SettingsError

if TYPE_CHECKING:
    from millpond.actions import ActionSpec

__all__ = [
    "BatchLimits",
    "DestinationType",
    "Item",
    "OutboundRequest",
    "Outcome",
    "Partial",
    "RateLimit",
    "Reject",
    "Retry",
    "Sent",
    "SettingsError",
    "classify_status",
    "estimate_size",
    "header",
    "is_retryable_status",
    "retry_after_seconds",
]

#: Upper bound for a vendor-supplied Retry-After, so one odd header cannot
#: park a destination for days. The pump may apply its own, lower cap.
MAX_RETRY_AFTER_SECONDS = 3600.0

#: How much of a vendor's error body is kept in a reason (dead-letter text).
REASON_BODY_CHARS = 500


# -- capabilities declared as data ------------------------------------------------------


class RateLimit(msgspec.Struct, frozen=True):
    """Default sending rate for a destination type, taken from vendor docs.

    `events_per_second` is the user-facing knob (destination `rate_limit`);
    `requests_per_second` is set where the vendor documents a request-rate
    limit, so batched sends also stay under it. None means "not documented".
    `max_in_flight` is how many requests may be on the wire at once (per-user
    order is kept whatever it is): enough to reach the rate at the vendor's
    usual latency, few enough not to look like a flood.
    """

    events_per_second: float
    requests_per_second: float | None = None
    max_in_flight: int = 4


class BatchLimits(msgspec.Struct, frozen=True):
    """How the pump may group items into one request.

    `max_events` caps items per request (1 = unbatched). `max_bytes` caps the
    sum of `estimate_size(payload)` over a batch; each type sets it below the
    vendor's request limit with headroom for the envelope and fields that
    `build_request` adds. `linger_seconds` is how long the pump may wait to fill
    a batch before sending a partial one.
    """

    max_events: int
    max_bytes: int
    linger_seconds: float


class Item(msgspec.Struct, frozen=True):
    """One event on its way out: the mapped `payload` of an action and the stored
    `event` it came from (with `messageId`, `seq`, `timestamp`...). The event is
    there so a destination can derive dedupe keys (e.g. PostHog `uuid`) from the
    stored `messageId` even when a custom mapping leaves them out. For a type with
    `raw_payloads`, `payload` may be a `msgspec.Raw` and `event` only `seq` and
    `messageId`."""

    payload: dict
    event: dict


class OutboundRequest(msgspec.Struct):
    """A fully built HTTP request; the pump sends it as is."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    item_count: int


# -- outcomes: a short closed list ----------------------------------------------------


class Sent(msgspec.Struct, frozen=True):
    """Every item in the request was accepted."""


class Retry(msgspec.Struct, frozen=True):
    """Transient failure: resend the whole request later. `retry_after` is the
    vendor's hint in seconds (None: use the pump's backoff)."""

    reason: str
    retry_after: float | None = None


class Reject(msgspec.Struct, frozen=True):
    """Terminal failure for every item: dead-letter them with `reason`.

    `split` is True when the vendor refused the *size* of a multi-item request
    (413, or Segment's 400 for an oversize batch): a pump may halve the batch and
    resend instead. A pump that ignores `split` dead-letters, which is still
    correct (nothing is silently dropped; dead letters can be replayed).
    """

    reason: str
    split: bool = False


class Partial(msgspec.Struct, frozen=True):
    """The vendor answered per item.

    - indexes in `sent_indexes` were accepted;
    - indexes in `rejected` are terminal (dead-letter with the vendor's reason);
    - indexes in `skipped` were left out on purpose, never to be sent (a loader
      screening its batch against the regulations at its commit drops the events of
      people deleted meanwhile): each ends skipped with its reason, not sent;
    - every other index (`pending(item_count)`) was *not* processed through no
      fault of its own and must be resent without them (e.g. Amplitude rejects
      the whole request when some events are invalid).
    """

    sent_indexes: frozenset[int]
    rejected: dict[int, str]
    skipped: dict[int, str] = msgspec.field(default_factory=dict)

    def pending(self, item_count: int) -> list[int]:
        """Indexes neither accepted, rejected nor skipped: the pump resends these."""
        return [
            i for i in range(item_count)
            if i not in self.sent_indexes and i not in self.rejected and i not in self.skipped
        ]


Outcome = Sent | Retry | Reject | Partial


# -- helpers shared by all types --------------------------------------------------------

_encoder = msgspec.json.Encoder()


def estimate_size(payload: object) -> int:
    """Bytes `payload` takes as compact JSON: what byte-based batching counts."""
    return len(_encoder.encode(payload))


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup that works for dicts and httpx.Headers."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, val in headers.items():
        if key.lower() == lowered:
            return val
    return None


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Parse `Retry-After` (delay-seconds or HTTP-date, RFC 9110 §10.2.3).

    Returns seconds from now (never negative, at most MAX_RETRY_AFTER_SECONDS),
    or None when the header is absent or unparseable.
    """
    raw = header(headers, "Retry-After")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def is_retryable_status(status: int) -> bool:
    """The shared table: 408 Request Timeout, 425 Too Early, 429 Too Many
    Requests and every 5xx are transient; everything else non-2xx is terminal."""
    return status in (408, 425, 429) or 500 <= status <= 599


def body_text(body: bytes, limit: int = REASON_BODY_CHARS) -> str:
    """The response body as text for a reason, shortened."""
    text = body.decode("utf-8", errors="replace").strip()
    return text if len(text) <= limit else text[:limit] + "…"


def classify_status(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    item_count: int,
    detail: str | None = None,
) -> Outcome:
    """Apply the shared retry table. `detail` is a vendor-parsed error message
    used in the reason instead of the raw body."""
    if 200 <= status <= 299:
        return Sent()
    text = detail if detail is not None else body_text(body)
    reason = f"HTTP {status}: {text}" if text else f"HTTP {status}"
    if 300 <= status <= 399:
        location = header(headers, "Location")
        return Reject(f"{reason} (redirected to {location}; check the region/endpoint setting)")
    if is_retryable_status(status):
        return Retry(reason, retry_after_seconds(headers))
    return Reject(reason, split=status == 413 and item_count > 1)


def json_detail(body: bytes, *keys: str) -> str | None:
    """First string found under `keys` in a JSON object body, else None."""
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
    if not isinstance(data, dict):
        return None
    for key in keys:
        value = data.get(key)
        if isinstance(value, str) and value:
            return value
    return None


# -- the interface ---------------------------------------------------------------------


class DestinationType(ABC):
    """An outbound integration type (one per vendor API).

    What callers may rely on:
    - `parse_settings` validates everything up front and raises only
      `SettingsError`; an instance built from parsed settings never fails on
      configuration later.
    - `validate_item`, `group_key`, `build_request`, `classify` and
      `transport_error` are pure and never raise for JSON-shaped payloads; bad
      data becomes a reason string or an outcome, never an exception.
    - `build_request` is deterministic apart from clock-derived envelope fields
      (e.g. Segment `sentAt`): building the same items twice yields the same
      dedupe keys, so a retry or a replay is deduplicated by the vendor.
    - Read `batching` from the *instance*: types whose batch size is a setting
      (webhook `batch_size`, Amplitude `api`) narrow it per instance.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    docs: ClassVar[str]
    settings_type: ClassVar[type[msgspec.Struct]]
    #: A valid settings object, shown in error messages and the catalog.
    settings_example: ClassVar[dict]
    secret_fields: ClassVar[frozenset[str]] = frozenset()
    replayable: ClassVar[bool] = True
    #: ``vendor`` (an HTTP API), ``warehouse`` or ``storage`` (a loader, see ``loaders``).
    kind: ClassVar[str] = "vendor"
    default_rate_limit: ClassVar[RateLimit]
    batching: BatchLimits  # a class default; set per instance where batch size is a setting
    dedupe_key: ClassVar[str | None] = None
    #: True when `build_request` puts each `item.payload` into the body exactly as
    #: `encode_payload` encodes it (never reading or changing it) and reads nothing of
    #: an item but `payload` and `event`, and of `item.event` but `seq` and
    #: `messageId`. The pump may then hold a payload as its JSON (a `msgspec.Raw`, which
    #: msgspec splices into a body unchanged) and the event as just those two keys while
    #: they wait for a batch: thousands of held dicts cost the cyclic GC and the CPU
    #: cache more than the mapping that made them. It also hands `build_request` its own
    #: work items (with those two attributes) instead of copying each into an `Item`.
    raw_payloads: ClassVar[bool] = False
    presets: ClassVar[tuple[ActionSpec, ...]] = ()

    def __init__(self, settings: msgspec.Struct) -> None:
        if not isinstance(settings, self.settings_type):
            raise SettingsError(
                "",
                f"{self.name} expects {self.settings_type.__name__} settings "
                f"(use {type(self).__name__}.parse_settings); got {type(settings).__name__}",
            )
        self.settings = settings

    # settings ------------------------------------------------------------------------

    @classmethod
    def parse_settings(cls, raw: dict) -> msgspec.Struct:
        """Validate raw settings (unknown keys are errors) and return them typed.

        Raises SettingsError naming the field, the value and a correct example.
        """
        settings = _settings.convert(cls.name, cls.settings_type, raw, cls.settings_example)
        cls.check_settings(settings)
        return settings

    @classmethod
    def check_settings(cls, settings: msgspec.Struct) -> None:
        """Checks beyond types (URL shapes, fields that go together). Override;
        raise SettingsError."""
        return None

    @classmethod
    def from_settings(cls, raw: dict) -> DestinationType:
        """Parse `raw` and build an instance."""
        return cls(cls.parse_settings(raw))

    @classmethod
    def mask_settings(cls, raw: dict) -> dict:
        """A copy of `raw` safe to show: secrets become "••••" + last 4 chars."""
        return {
            key: _settings.mask_secret(value) if key in cls.secret_fields else value
            for key, value in raw.items()
        }

    # requests ------------------------------------------------------------------------

    def validate_item(self, action: str, payload: dict[str, Any]) -> str | None:
        """Reason why `payload` can never be accepted by the vendor (the pump
        dead-letters it without sending), or None. Catches documented limits
        before a request wastes a round trip or fails a whole batch."""
        return None

    def group_key(self, action: str, payload: dict[str, Any]) -> str:
        """Payloads with the same key may share one request. Default: per action."""
        return action

    def encode_payload(self, payload: dict[str, Any]) -> bytes:
        """`payload` as the JSON a `raw_payloads` type sends: compact msgspec JSON."""
        return _encoder.encode(payload)

    @abstractmethod
    def build_request(self, action: str, items: list[Item]) -> OutboundRequest:
        """One request for `items` (1 <= len <= batching.max_events, all with the
        same `group_key`). `action` is the action of the first item."""

    # deletion (regulations) ------------------------------------------------------------

    def deletion_requests(self, user_ids: list[str], anonymous_ids: list[str],
                          requester: str) -> list[OutboundRequest] | str:
        """The requests of the vendor's documented deletion API that delete these people
        (every id of each), or why this type cannot forward a deletion (the regulation
        then says ``not_supported`` with that reason). A 2xx answer to each means done;
        the regulation job retries what the shared table calls retryable."""
        return f"{self.title} has no deletion API millpond can call"

    # responses -----------------------------------------------------------------------

    def classify(
        self, status: int, headers: Mapping[str, str], body: bytes, item_count: int
    ) -> Outcome:
        """Turn the vendor's answer into an outcome. Default: the shared table."""
        return classify_status(status, headers, body, item_count)

    def success_problem(self, status: int, body: bytes) -> str | None:
        """Why ``body`` of a 2xx answer is not the vendor's success answer, or None.

        A type whose vendor contract defines the success body overrides this (Mixpanel
        answers JSON or ``1``): a 2xx with anything else (a proxy's HTML page, a captive
        portal, a truncated answer) proves nothing was ingested, so it is retried rather
        than counted as sent. Default: any 2xx body is success."""
        return None

    def answer(
        self, status: int, headers: Mapping[str, str], body: bytes, item_count: int
    ) -> Outcome:
        """What the pump calls: :meth:`classify`, then the success-body contract."""
        outcome = self.classify(status, headers, body, item_count)
        if isinstance(outcome, Sent) and 200 <= status <= 299:
            problem = self.success_problem(status, body)
            if problem:
                return Retry(f"HTTP {status} but {problem}")
        return outcome

    def transport_error(self, exc: Exception) -> Outcome:
        """No HTTP answer (timeout, refused connection, reset...). The request may
        or may not have been processed; every type here sends a dedupe key, so
        a resend is safe: Retry. Only a URL the client cannot use is terminal."""
        kind = type(exc).__name__
        if kind in ("UnsupportedProtocol", "InvalidURL", "LocalProtocolError"):
            return Reject(f"{kind}: {exc}")
        return Retry(f"{kind}: {exc}" if str(exc) else kind)
