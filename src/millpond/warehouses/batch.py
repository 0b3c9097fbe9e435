"""What goes into a loader and what comes out: the contract with the delivery runs.

Why these shapes: a warehouse or storage destination is driven by the same delivery-run
machinery as every HTTP destination (cursor, retries, dead letters, stats). That machinery
already understands :class:`~millpond.destinations.base.Retry` (transient: try the whole batch
again later) and :class:`~millpond.destinations.base.Reject` (terminal: dead-letter the batch
with the reason). A loader therefore answers a batch with exactly one of:

- :class:`Loaded`: the batch is in the warehouse, exactly once (re-running it changes nothing).
  ``discards`` lists every value or event that could not be stored as sent, each with its
  reason; they are stored too (``millpond_discards``) and a batch with discards is never
  ``clean``.
- ``Retry``: nothing of the batch was applied (one transaction per batch); the cause may go
  away (database restarting, network). The caller retries on its own schedule.
- ``Reject``: nothing was applied and retrying the same batch cannot succeed until someone
  acts (a table altered by hand, permissions); the reason names table and column.

Loaders never retry and never sleep: retry policy, backoff and dead letters belong to the
caller, so a loader is a plain function of (batch, warehouse state) that tests can drive.
"""

from __future__ import annotations

from typing import Any

import msgspec

from millpond.destinations.base import Reject, Retry

__all__ = ["Discard", "LoadOutcome", "Loaded", "Reject", "Retry", "StoredEvent", "from_log_rows"]

_decode = msgspec.json.Decoder().decode


class StoredEvent(msgspec.Struct, frozen=True):
    """One event as the log stores it.

    ``event`` is the stored JSON object (a Segment-spec message with ``messageId``, ``type``,
    ``timestamp``, ``receivedAt``...). ``raw`` is the stored JSON bytes when the caller has them
    (the log hands out bytes): the Parquet writer keeps them verbatim instead of re-encoding.
    """

    seq: int
    source_id: str
    event: dict[str, Any]
    raw: bytes | None = None


def from_log_rows(rows: list[tuple[int, bytes]]) -> list[StoredEvent]:
    """Events from ``EventLog.read_after`` rows ``(seq, body)``; ``source_id`` is in the body."""
    out = []
    for seq, body in rows:
        event = _decode(body)
        out.append(StoredEvent(seq, str(event.get("source_id") or ""), event, body))
    return out


class Discard(msgspec.Struct, frozen=True):
    """A value (``column`` set) or a whole row (``column`` None) not stored as sent.

    ``value`` is the value as JSON text (shortened), ``reason`` says why in words a person
    can act on, e.g. ``"abc" (text) does not fit column price of type bigint``.
    """

    seq: int
    message_id: str
    table: str
    column: str | None
    value: str | None
    reason: str


class Loaded(msgspec.Struct, frozen=True):
    """A batch applied exactly once.

    - ``events``: events in the batch;
    - ``rows``: rows the batch holds per table (a track event counts in ``tracks`` and in its
      event table), i.e. what a warehouse built from these events contains for them;
    - ``inserted``: rows new to the warehouse per table: equal to ``rows`` on a first load,
      0 when the batch was already loaded (re-run after a crash). For ``users`` / ``accounts``
      it counts rows whose values changed;
    - ``discards``: see :class:`Discard`; ``clean`` is False when there is any;
    - ``files``: storage writers only, the object keys written (data files, then manifest);
    - ``screened``: the seqs of events left out because a regulation blocked them by the
      time the batch committed, each with the screen's reason (``deleted``,
      ``suppressed``; :mod:`millpond.warehouses.screening`): the delivery run records
      them as skipped with that reason, not as sent.
    """

    events: int
    rows: dict[str, int]
    inserted: dict[str, int]
    discards: tuple[Discard, ...] = ()
    files: tuple[str, ...] = ()
    already_loaded: int = 0
    """Events skipped because an earlier run already committed them (storage writers)."""
    screened: dict[int, str] = msgspec.field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not self.discards


LoadOutcome = Loaded | Retry | Reject
