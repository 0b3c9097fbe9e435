"""Reading an import file into batches: open it, convert its rows, cut the batches.

Everything here depends only on a :class:`ReadSpec`, which pickles, so the same code
runs in the runner's thread and in the reader process
(:mod:`millpond.backfill.reader_process`): both see the same rows, events, messageIds
and batch boundaries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from millpond.backfill.batching import ChunkPreparer, Item, cut_batches
from millpond.backfill.csvfile import CsvInput
from millpond.backfill.ids import csv_row_ids, jsonl_line_ids
from millpond.backfill.model import ImportOptions
from millpond.backfill.rows import ColumnPlan, StreamStats, csv_events, jsonl_events, open_jsonl


@dataclass
class ReadSpec:
    """What to read and how to batch it; rows up to ``skip_through`` are already settled."""

    path: Path
    format: str
    delimiter: str | None
    plan: ColumnPlan | None
    options: ImportOptions
    #: What shapes the events besides the rows (kind, types, column roles): part of every
    #: row's messageId (see :mod:`millpond.backfill.ids`).
    row_shaping: dict
    file_name: str
    skip_through: int
    batch_size: int
    keep_encoded: bool


@contextmanager
def open_batches(spec: ReadSpec, stats: StreamStats, chunks: ChunkPreparer | None = None,
                 ) -> Iterator[tuple[Iterator[Item], Callable[[], int]]]:
    """``(items, bytes_read)``: the file's batches (see :func:`cut_batches`, which hands
    their events to ``chunks`` when given) and a gauge of how far into the file the reader
    is, for progress."""
    options = spec.options
    limits = {"batch_size": spec.batch_size, "max_event_bytes": options.max_event_bytes,
              "max_batch_bytes": options.max_batch_bytes, "start_row": spec.skip_through,
              "keep_encoded": spec.keep_encoded, "chunks": chunks}
    if spec.format == "csv":
        assert spec.plan is not None
        row_id = csv_row_ids(options.kind, spec.row_shaping, spec.plan.header)
        with CsvInput(spec.path, spec.delimiter) as source:
            stream = csv_events(source.records(), spec.plan, options, row_id,
                                spec.file_name, spec.skip_through, stats)
            yield cut_batches(stream, stats, **limits), source.bytes_read
    else:
        with open_jsonl(spec.path) as handle:
            line_id = jsonl_line_ids(options.kind, spec.row_shaping)
            stream = jsonl_events(handle, line_id, spec.file_name, spec.skip_through, stats)
            yield cut_batches(stream, stats, **limits), handle.tell
