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

from millpond.backfill.batching import Item, cut_batches
from millpond.backfill.csvfile import CsvInput
from millpond.backfill.ids import message_id_factory
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
    fingerprint: str
    file_name: str
    skip_through: int
    batch_size: int
    keep_encoded: bool


@contextmanager
def open_batches(spec: ReadSpec,
                 stats: StreamStats) -> Iterator[tuple[Iterator[Item], Callable[[], int]]]:
    """``(items, bytes_read)``: the file's batches (see :func:`cut_batches`) and a gauge
    of how far into the file the reader is, for progress."""
    message_id = message_id_factory(spec.fingerprint)
    options = spec.options
    limits = {"batch_size": spec.batch_size, "max_event_bytes": options.max_event_bytes,
              "max_batch_bytes": options.max_batch_bytes, "start_row": spec.skip_through,
              "keep_encoded": spec.keep_encoded}
    if spec.format == "csv":
        assert spec.plan is not None
        with CsvInput(spec.path, spec.delimiter) as source:
            stream = csv_events(source.records(), spec.plan, options, message_id,
                                spec.file_name, spec.skip_through, stats)
            yield cut_batches(stream, stats, **limits), source.bytes_read
    else:
        with open_jsonl(spec.path) as handle:
            stream = jsonl_events(handle, message_id, spec.file_name, spec.skip_through, stats)
            yield cut_batches(stream, stats, **limits), handle.tell
