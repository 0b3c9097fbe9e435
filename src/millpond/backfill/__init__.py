"""Backfill: streaming CSV people import and CSV/JSONL events import.

Entry point for the CLI and the API upload endpoint: :func:`run_import` with
:class:`ImportOptions` and a :class:`Sink` (e.g. :class:`HttpSink`, or the log sink in
:mod:`millpond.backfill.log_sink`, whose imports read the file in a reader process:
:mod:`millpond.backfill.reader_process`).
"""

from millpond.backfill.model import (
    ImportAborted,
    ImportCancelled,
    ImportInputError,
    ImportOptions,
    ImportProgress,
    ImportSummary,
    RowError,
)
from millpond.backfill.runner import choose_kind, preflight, run_import
from millpond.backfill.sinks import HttpSink, Sink, SinkError, SinkResult

__all__ = [
    "HttpSink",
    "ImportAborted",
    "ImportCancelled",
    "ImportInputError",
    "ImportOptions",
    "ImportProgress",
    "ImportSummary",
    "RowError",
    "Sink",
    "SinkError",
    "SinkResult",
    "choose_kind",
    "preflight",
    "run_import",
]
