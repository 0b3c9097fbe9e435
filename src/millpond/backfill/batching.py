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
from typing import Any

import msgspec

from millpond.backfill.model import RowError
from millpond.backfill.rows import Converted, StreamStats

#: ``{"batch":[`` + ``]}``: what the HTTP sink wraps a batch in.
BATCH_OVERHEAD = 12


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


def cut_batches(
    stream: Iterator[Converted],
    stats: StreamStats,
    *,
    batch_size: int,
    max_event_bytes: int,
    max_batch_bytes: int,
    start_row: int,
    keep_encoded: bool,
) -> Iterator[Item]:
    """Batches of at most ``batch_size`` events and ``max_batch_bytes`` of JSON.

    A batch closed because the next event would not fit ends before that event's row
    (``through = row - 1``), so a checkpoint never claims a row of the next batch. An event
    over ``max_event_bytes`` is rejected as ``too_large``. ``encoded`` is kept only when
    ``keep_encoded`` (a plain sink re-encodes the batch its own way).
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
        if batch_bytes + size > max_batch and events:
            yield Batch(rows, row - 1, stats.blank, events,
                        encoded_batch if keep_encoded else None)
            events, encoded_batch, rows = [], [], []
            batch_bytes = 0
        events.append(item)  # type: ignore[arg-type]
        if keep_encoded:
            encoded_batch.append(encoded)
        rows.append(row)
        batch_bytes += size
        if len(events) >= batch_size:
            yield Batch(rows, row, stats.blank, events, encoded_batch if keep_encoded else None)
            events, encoded_batch, rows = [], [], []
            batch_bytes = 0
    through = max(row, start_row)
    if events:
        yield Batch(rows, through, stats.blank, events, encoded_batch if keep_encoded else None)
    yield End(through)
