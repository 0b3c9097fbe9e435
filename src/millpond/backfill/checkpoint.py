"""The resume checkpoint: ``<FILE>.millpond-import.json``.

Written after every acknowledged batch (atomically: temp file + ``os.replace``)
with the last row whose fate is settled -- sent and acknowledged, or written to
the error report. Losing a checkpoint write is harmless: the rows after the
previous one are sent again with the same deterministic messageIds and the
server drops them as duplicates. So no fsync is needed, and a crash can cost at
most one batch of re-sending, never a lost or doubled event.

The error report's size at that moment is recorded too, so a resumed run can
truncate the report to it and not list the same bad row twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CHECKPOINT_SUFFIX = ".millpond-import.json"
COUNTERS = (
    "rows_read", "blank_rows", "events_sent", "events_accepted", "duplicates",
    "rows_rejected", "batches",
)


@dataclass
class Checkpoint:
    """What a later run needs to continue exactly where this one was acknowledged."""

    file: str
    fingerprint: str
    kind: str
    source: str | None
    last_row: int = 0
    error_report: str | None = None
    error_report_bytes: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    completed: bool = False
    updated_at: float = 0.0

    def matches(self, fingerprint: str, kind: str, source: str | None) -> bool:
        return (self.fingerprint, self.kind, self.source) == (fingerprint, kind, source)


def default_paths(file: Path, errors: Path | None, state_dir: Path | None) -> tuple[Path, Path]:
    """``(error report, checkpoint)`` paths; the checkpoint sits next to the error report."""
    report = errors if errors is not None else file.with_name(file.name + ".errors.csv")
    directory = state_dir if state_dir is not None else report.parent
    return report, directory / (file.name + CHECKPOINT_SUFFIX)


def load(path: Path) -> Checkpoint | None:
    """Read a checkpoint; None if absent or unreadable (then the import starts over)."""
    try:
        data: dict[str, Any] = json.loads(path.read_text("utf-8"))
        return Checkpoint(**data)
    except (OSError, ValueError, TypeError):
        return None


def save(path: Path, checkpoint: Checkpoint) -> None:
    """Replace the checkpoint atomically (a reader sees the old or the new, never half)."""
    checkpoint.updated_at = time.time()
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(asdict(checkpoint), indent=1), "utf-8")
    os.replace(tmp, path)


def remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
