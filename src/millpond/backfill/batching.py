"""Cutting the stream of converted rows into batches: where each batch ends, and why.

Why a module of its own: the same cut happens in the runner's thread (HTTP imports) and
in the reader process (imports into the log, see :mod:`millpond.backfill.reader_process`),
and both must agree exactly on the batch boundaries, the size limits and the rows a
checkpoint may claim, or a resumed import would skip or repeat rows.

:func:`cut_batches` yields, in row order, the runner's own rejections (a
:class:`~millpond.backfill.model.RowError`), each :class:`Batch` as it closes, and one
:class:`End` after the last row. Each event is encoded once, here, to enforce the
per-event and per-batch size limits; the encoded bytes travel with the batch so a sink
that needs JSON reuses them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import msgspec

from millpond.backfill.model import RowError
from millpond.backfill.rows import Converted, StreamStats

#: ``{"batch":[`` + ``]}``: what the HTTP sink wraps a batch in.
BATCH_OVERHEAD = 12
#: Events a :class:`ChunkPreparer` is handed at a time (see :func:`cut_batches`).
CHUNK_EVENTS = 500


@dataclass(slots=True, eq=False)
class Batch:
    """The events of ``rows``, to hand to the sink as one batch.

    ``through`` (at least ``rows[-1]``) is the row a checkpoint may claim once this batch
    and every one before it are settled: the rows between its last event and ``through``
    were rejected or blank. ``blank`` is the number of blank rows seen when the batch was
    cut, settled with it. ``events``/``encoded`` are the events and their JSON; a batch
    from the reader process carries the sink's ``prepared`` form instead.
    """

    rows: list[int]
    through: int
    blank: int
    events: list[dict[str, Any]] | None = None
    encoded: list[bytes] | None = None
    prepared: Any = None


@dataclass(slots=True, frozen=True)
class End:
    """Every row has been read; ``through`` is the last row of the file (or the resume point)."""

    through: int


Item = RowError | Batch | End


@runtime_checkable
class ChunkPreparer(Protocol):
    """Prepares a batch a chunk at a time, as it fills (see :func:`cut_batches`).

    ``add`` takes the batch's next events and their JSON (the lists are its own from then
    on); ``finish`` returns the whole batch's prepared form, what preparing all its events
    at once would give, and starts the next batch.
    """

    def add(self, events: list[dict[str, Any]], encoded: list[bytes] | None) -> None: ...

    def finish(self) -> Any: ...


def cut_batches(
    stream: Iterator[Converted],
    stats: StreamStats,
    *,
    batch_size: int,
    max_event_bytes: int,
    max_batch_bytes: int,
    start_row: int,
    keep_encoded: bool,
    chunks: ChunkPreparer | None = None,
) -> Iterator[Item]:
    """Batches of at most ``batch_size`` events and ``max_batch_bytes`` of JSON.

    A batch closed because the next event would not fit ends before that event's row
    (``through = row - 1``), so a checkpoint never claims a row of the next batch. An event
    over ``max_event_bytes`` is rejected as ``too_large``. ``encoded`` is kept only when
    ``keep_encoded`` (a plain sink re-encodes the batch its own way).

    With ``chunks`` (the reader process, for a sink that prepares), every
    :data:`CHUNK_EVENTS` events of a batch go to ``chunks.add`` as they are cut, and the
    batch carries ``chunks.finish()`` as ``prepared`` instead of its events: an event is
    prepared and dropped while it is still in the CPU's cache, not 5,000 events later
    (preparing and freeing a whole batch of cold events cost ~1 µs more a row).
    """
    encode = msgspec.json.Encoder().encode
    max_batch = max_batch_bytes - BATCH_OVERHEAD
    events: list[dict[str, Any]] = []
    encoded_batch: list[bytes] = []
    rows: list[int] = []
    batch_bytes = 0  # of the batch's events and their separating commas
    row = start_row
    for row, item in stream:
        if type(item) is RowError:
            yield item
            continue
        encoded = encode(item)
        size = len(encoded) + 1
        if size > max_event_bytes:
            yield RowError(row, 0, "", "too_large",
                           f"event is {size - 1} bytes; the limit is {max_event_bytes}")
            continue
        if batch_bytes + size > max_batch and rows:
            yield _close(rows, row - 1, stats, events, encoded_batch, keep_encoded, chunks)
            events, encoded_batch, rows = [], [], []
            batch_bytes = 0
        events.append(item)  # type: ignore[arg-type]
        if keep_encoded:
            encoded_batch.append(encoded)
        rows.append(row)
        batch_bytes += size
        if len(rows) >= batch_size:
            yield _close(rows, row, stats, events, encoded_batch, keep_encoded, chunks)
            events, encoded_batch, rows = [], [], []
            batch_bytes = 0
        elif chunks is not None and len(events) >= CHUNK_EVENTS:
            chunks.add(events, encoded_batch if keep_encoded else None)
            events, encoded_batch = [], []
    through = max(row, start_row)
    if rows:
        yield _close(rows, through, stats, events, encoded_batch, keep_encoded, chunks)
    yield End(through)


def _close(rows: list[int], through: int, stats: StreamStats, events: list[dict[str, Any]],
           encoded: list[bytes], keep_encoded: bool, chunks: ChunkPreparer | None) -> Batch:
    """The batch of ``rows``: its events (those not yet handed to ``chunks``), or with
    ``chunks``, what it made of them all."""
    if chunks is None:
        return Batch(rows, through, stats.blank, events, encoded if keep_encoded else None)
    if events:
        chunks.add(events, encoded if keep_encoded else None)
    return Batch(rows, through, stats.blank, prepared=chunks.finish())
