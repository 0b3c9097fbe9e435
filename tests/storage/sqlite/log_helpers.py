"""SQLite log helpers shared by its tests."""

from __future__ import annotations

from pathlib import Path

from millpond.storage.models import AppendResult, NewEvent
from millpond.storage.sqlite.log import SQLiteEventLog

from ..helpers import ev


def append_sync(log: SQLiteEventLog, events: list[NewEvent]) -> AppendResult:
    return log.submit(events).result(30)


def filled_then_closed(path: Path, message_ids: list[str], per_append: int) -> None:
    """A log at ``path`` given ``message_ids`` (source ``src_a``), ``per_append`` a
    commit, then closed: a data dir as a stopped server leaves it."""
    log = SQLiteEventLog(path)
    try:
        for i in range(0, len(message_ids), per_append):
            append_sync(log, [ev(m) for m in message_ids[i:i + per_append]])
    finally:
        log.close()
