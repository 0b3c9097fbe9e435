"""What the log on JetStream keeps beside the stream: forever dedupe, the event index and
retention's notes, in a :class:`LogTable` (PostgreSQL's: ``storage/postgres/dedupe.py``).

The stream alone dedupes only inside its window (2 min), cannot look an event up by
messageId, and reads only by arrival. With a table an append first asks it which of its
events were stored before (duplicates, acknowledged, not sent), publishes the rest, and
records every acknowledged event's (source, messageId, seq) and index row (event time,
arrival, type, name, user and anonymous id) in one statement before it returns: an
acknowledged event is always indexed.

A crash between the PubAck and that record leaves stored, unacknowledged messages without
a row. Every message carries its index row in a header (:data:`INDEX_HEADER`), and each
log's opening repairs the table: the seqs after its *mark* (the last seq known indexed)
that the stream holds and the table lacks are read back and recorded, then the mark moves
to the stream's last seq at the start of the repair. A client retrying the lost append is
then answered ``duplicate`` by the table, as by the stream's window.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

from millpond.storage.models import Expired, Window

__all__ = ["INDEX_HEADER", "DedupeTable", "Indexed", "Key", "LogTable", "Seen"]

#: (source_id, message_id)
Key = tuple[str, str]
#: The header holding a message's index row (JSON array, see :func:`index_header`).
INDEX_HEADER = "Millpond-Ix"


class Seen(NamedTuple):
    """A key the table knows: the seq that stored it, and whether retention removed it."""

    seq: int
    expired: bool


#: One acknowledged event as the table records it: (seq, source_id, message_id, type,
#: event name, user_id, anonymous_id, ts, received). A plain tuple, not a NamedTuple: one
#: is built per appended event, and a NamedTuple's constructor costs 2 us more.
Indexed = tuple[int, str, str, str, str | None, str | None, str | None, int, int]


class LogTable(Protocol):
    """Called on the log's event loop; each method raises StorageUnavailable when the table
    cannot be reached (nothing changed)."""

    async def seen(self, keys: Sequence[Key]) -> dict[Key, Seen]:
        """What the table knows of each of ``keys`` recorded before."""
        ...

    async def record(self, rows: Sequence[Indexed]) -> None:
        """Record the dedupe key and index row of each of ``rows``; a key already there
        keeps its seq, a seq already indexed its row. Durable on return."""
        ...

    async def find(self, source_id: str, message_id: str) -> int | None:
        """The seq recorded for (``source_id``, ``message_id``), or None."""
        ...

    async def unindexed(self, upto: int) -> tuple[int, list[int]]:
        """The mark, and the seqs after it up to ``upto`` without an index row."""
        ...

    async def set_mark(self, seq: int) -> None:
        """Every seq up to ``seq`` is indexed (or not in the stream)."""
        ...

    async def expirable(self, source_id: str, before_ms: int, limit: int) -> list[int]:
        """Up to ``limit`` indexed seqs of ``source_id`` that arrived before ``before_ms``."""
        ...

    async def forget_expired(self, source_id: str, before_ms: int,
                             seqs: Sequence[int]) -> dict[str, bool]:
        """After the stream dropped ``seqs``: remove their index rows, mark their keys
        expired, count them per hour of event time, and raise the source's cutoff; one
        transaction. Returns whose events they were (``Expiry.owners``)."""
        ...

    async def expired(self, window: Window) -> list[Expired]: ...

    async def close(self) -> None: ...


#: The old name, for callers that only dedupe.
DedupeTable = LogTable
