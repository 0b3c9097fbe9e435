"""Options, results and errors shared by the import runner, the CLI and the API.

Kept free of I/O so the API upload endpoint can build an :class:`ImportOptions`
from a request and return :meth:`ImportSummary.to_dict` without touching the
CLI.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

#: The batch limit of the collector's ``/v1/import`` (Segment's is 500 KB; ours is larger).
MAX_BATCH_BYTES = 3_500 * 1024
#: Segment's per-message limit; a larger event would be refused by most destinations.
MAX_EVENT_BYTES = 32 * 1024
#: Events per batch unless the options or the sink (its ``batch_size``) say otherwise.
DEFAULT_BATCH_SIZE = 1000

LIBRARY_NAME = "millpond-import"
try:
    LIBRARY_VERSION = metadata.version("millpond")
except metadata.PackageNotFoundError:  # running from a source tree without install
    LIBRARY_VERSION = "0.0.0"

PEOPLE_ID_CANDIDATES = ("id", "user_id", "userId", "email")
EVENTS_USER_CANDIDATES = ("user_id", "userId")
EVENTS_NAME_CANDIDATES = ("event",)
EVENTS_TIME_CANDIDATES = ("timestamp",)


@dataclass
class ImportOptions:
    """How to read one file and turn it into events.

    ``kind`` is ``people`` (CSV → identify) or ``events`` (CSV or JSONL →
    track/any). Column options left at ``None`` use the documented defaults,
    matched case-insensitively. ``source`` is only bookkeeping: a checkpoint
    written for one source is never resumed for another. ``batch_size`` left at
    ``None`` uses the sink's own ``batch_size`` if it has one (the log sink commits
    larger groups than an HTTP request should carry), else ``DEFAULT_BATCH_SIZE``.
    """

    kind: str = "people"
    source: str | None = None
    id_column: str | None = None
    user_column: str | None = None
    event_column: str | None = None
    timestamp_column: str | None = None
    delimiter: str | None = None
    types: str = "infer"
    empty: str = "skip"
    format: str | None = None
    errors_path: Path | None = None
    state_dir: Path | None = None
    resume: bool = True
    batch_size: int | None = None
    max_batch_bytes: int = MAX_BATCH_BYTES
    max_event_bytes: int = MAX_EVENT_BYTES
    display_name: str | None = None

    def validate(self) -> None:
        """Raise :class:`ImportInputError` for option values no file could satisfy."""
        if self.kind not in ("people", "events"):
            raise ImportInputError(f"unknown import kind {self.kind!r}")
        if self.types not in ("infer", "text"):
            raise ImportInputError(f"--types must be 'infer' or 'text', not {self.types!r}")
        if self.empty not in ("skip", "clear"):
            raise ImportInputError(f"--empty must be 'skip' or 'clear', not {self.empty!r}")
        if self.format not in (None, "csv", "jsonl"):
            raise ImportInputError(f"format must be 'csv' or 'jsonl', not {self.format!r}")
        if self.delimiter is not None and len(self.delimiter) != 1:
            raise ImportInputError(f"--delimiter must be one character, not {self.delimiter!r}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ImportInputError("--batch-size must be at least 1")
        if self.max_event_bytes > self.max_batch_bytes:
            raise ImportInputError("max_event_bytes cannot exceed max_batch_bytes")


class RowError(NamedTuple):
    """One rejected row: where it is, which column, a short code and a readable reason."""

    row: int
    line: int
    column: str
    code: str
    reason: str


@dataclass
class ImportProgress:
    """What a progress callback receives, after every batch and periodically while skipping."""

    bytes_read: int
    total_bytes: int
    rows_read: int
    events_accepted: int
    rows_rejected: int
    elapsed: float


@dataclass
class ImportSummary:
    """The outcome of one :func:`run_import` call.

    Counts cover the whole file, earlier interrupted runs included; ``elapsed_seconds``,
    ``rows_per_second`` and ``rows_skipped`` are this run's. ``rows_read`` counts
    data rows (not the header or blank rows); every one ends as exactly one of
    ``events_accepted`` (newly stored), ``duplicates`` (the sink already had that
    messageId) or ``rows_rejected`` (see ``rejected_by_reason`` and the
    ``error_report`` CSV) -- once the import is ``completed``.
    ``already_completed`` means a finished checkpoint was found and nothing was sent.
    """

    file: str
    kind: str
    source: str | None
    fingerprint: str
    rows_read: int = 0
    blank_rows: int = 0
    events_sent: int = 0
    events_accepted: int = 0
    duplicates: int = 0
    rows_rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    resumed_after_row: int = 0
    rows_skipped: int = 0
    last_row: int = 0
    completed: bool = False
    already_completed: bool = False
    elapsed_seconds: float = 0.0
    rows_per_second: float = 0.0
    error_report: str | None = None
    checkpoint: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ImportInputError(Exception):
    """The file or the options cannot be imported at all (nothing was sent).

    Messages are one line and meant for the user as they are; ``field``, when one option
    is at fault, names it (the API's and the console's error field).
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ImportAborted(Exception):
    """The import stopped part-way (sink failure, interrupted); the checkpoint is intact.

    ``summary`` holds the counts up to the last acknowledged batch, so callers
    can tell the user where a re-run will resume.
    """

    def __init__(self, message: str, summary: ImportSummary):
        super().__init__(message)
        self.summary = summary


class ImportCancelled(ImportAborted):
    """The import was asked to stop (``run_import``'s ``stop``) and stopped at a durable
    checkpoint: every row up to ``summary.last_row`` is settled, nothing after it was
    counted, and a later run with ``resume`` continues after it."""
