"""What the log on JetStream needs for *forever* dedupe and :meth:`find`: a table of
(source, messageId) -> seq that outlives the stream's ``duplicate_window``.

The stream alone dedupes only inside its window (2 min), and cannot look an event up by
messageId. With a :class:`DedupeTable` (PostgreSQL's: ``storage/postgres/dedupe.py``) an
append first asks the table which of its events were stored before (duplicates,
acknowledged, not sent), publishes the rest, and records every acknowledged (source,
messageId, seq) before it returns. A crash between the PubAck and the record is caught by
the stream's window: the client's retry is answered ``duplicate`` with the first seq,
which is then recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

__all__ = ["DedupeTable", "Key"]

#: (source_id, message_id)
Key = tuple[str, str]


class DedupeTable(Protocol):
    """Called on the log's event loop; each method raises StorageUnavailable when the table
    cannot be reached (nothing changed)."""

    async def seen(self, keys: Sequence[Key]) -> dict[Key, int]:
        """The seq of each of ``keys`` already recorded."""
        ...

    async def record(self, rows: Sequence[tuple[str, str, int]]) -> None:
        """Record (source_id, message_id, seq) rows; a key already there keeps its seq.
        Durable on return."""
        ...

    async def find(self, source_id: str, message_id: str) -> int | None:
        """The seq recorded for (``source_id``, ``message_id``), or None."""
        ...

    async def close(self) -> None: ...
