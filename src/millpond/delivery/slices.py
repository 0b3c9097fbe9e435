"""What a pump reads: a *slice* of the log, handed out in chunks with the ledger's keys.

Live delivery, redrives and replays differ in the slice they read, nothing else:

- :class:`LogTail` follows the log after a cursor forever (key: the event's ``seq``);
- :class:`RowsSource` hands out a closed list of events (a redrive; key: ``seq``);
- :class:`WindowSlice` reads a closed event-time window in (ts, seq) order
  (``EventIndex.scan``, which may read ahead). ``seq`` is not monotonic in that order, so
  each row gets a running *position* (0, 1, 2, ...) as its key; the chunks in flight
  turn the ledger's "just below the lowest unfinished" position back into a (ts, seq)
  cursor, and a resumed replay scans strictly after it, and the positions of the
  events a checkpoint lists by outcome back into their seqs (:meth:`Slice.event_seqs`,
  on the checkpoint writer's thread, a few C calls per run of positions).

Why every chunk carries its keys (instead of a ``keyed`` flag on the source that the
pump branches on per row): the pump's loop is one shape for every slice, and a new slice
(a deletion sweep, a partition of a scale-out log) only has to say how its rows are keyed
and how a key becomes a saved cursor (:meth:`Slice.cursor_at`).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Sequence
from itertools import repeat
from operator import attrgetter, sub
from typing import NamedTuple, Protocol

from millpond.storage.contracts import EventIndex, EventLog
from millpond.storage.models import StoredEvent, Window, WindowCursor


class Chunk(NamedTuple):
    """Rows in the slice's order and the ledger key of each (increasing)."""

    keys: Sequence[int]
    rows: Sequence[StoredEvent]


EMPTY = Chunk((), ())


class Slice(Protocol):
    async def next_chunk(self, timeout: float) -> Chunk | None:
        """The next rows; an empty chunk when none arrived within ``timeout``; ``None``
        when a closed slice is exhausted."""
        ...

    def cursor_at(self, key: int) -> int | WindowCursor | None:
        """The cursor a run saves once every event up to ``key`` finished (None: the
        slice keeps no cursor, or none yet)."""
        ...

    def event_seqs(self, keys: list[int]) -> list[int]:
        """The log seqs of the events at ``keys`` (increasing, each above the last key
        :meth:`saved`), in that order; ``keys`` itself when keys are seqs. Called by one
        checkpoint writer at a time, on its thread."""
        ...

    def saved(self, key: int) -> None:
        """Every event up to ``key`` is saved: forget what only they needed."""
        ...

    async def aclose(self) -> None:
        """Stop reading (the pump stopped)."""
        ...


async def close_scan(scan: object) -> None:
    """Stop an index scan (``EventIndex.scan`` promises ``aclose`` on what it returns,
    which its ``AsyncIterator`` type cannot say)."""
    close = getattr(scan, "aclose", None)
    if close is not None:
        await close()


def _by_seq(rows: Sequence[StoredEvent]) -> Chunk:
    return Chunk([r.seq for r in rows], rows)


_SEQ = attrgetter("seq")


class _KeyedBySeq:
    """The key of every row is its seq: nothing to translate, nothing to forget."""

    def event_seqs(self, keys: list[int]) -> list[int]:
        return keys

    def saved(self, key: int) -> None:
        return None


class LogTail(_KeyedBySeq):
    """The live slice: every event after ``after_seq``, then the tail as it grows
    (``EventLog.read`` and ``wait``; seqs may have gaps)."""

    def __init__(self, log: EventLog, after_seq: int, chunk: int = 500):
        self.log = log
        self.after = after_seq
        self.chunk = chunk

    async def next_chunk(self, timeout: float) -> Chunk:
        if self.log.last_seq() <= self.after:
            await self.log.wait(self.after, timeout)
            if self.log.last_seq() <= self.after:
                return EMPTY
        rows = await self.log.read(self.after, self.chunk)
        if rows:
            self.after = rows[-1].seq
        return _by_seq(rows)

    def cursor_at(self, key: int) -> int:
        return key

    async def aclose(self) -> None:
        return None


class RowsSource(_KeyedBySeq):
    """A closed slice given as rows (redrives); ends after the last chunk. It keeps no
    cursor: a redrive marks its dead letters as their events finish."""

    def __init__(self, rows: list[StoredEvent], chunk: int = 500):
        self._rows = rows
        self._pos = 0
        self.chunk = chunk

    async def next_chunk(self, timeout: float) -> Chunk | None:
        if self._pos >= len(self._rows):
            return None
        rows = self._rows[self._pos:self._pos + self.chunk]
        self._pos += len(rows)
        return _by_seq(rows)

    def cursor_at(self, key: int) -> None:
        return None

    async def aclose(self) -> None:
        return None


class WindowSlice:
    """A replay's slice; see the module docstring.

    Why whole chunks are kept (not one (position, ts, seq) entry per row): the cursor of
    a position is ``rows[position - first]`` of its chunk, so tracking rows in flight
    costs nothing per event; a chunk is let go once the cursor has passed its last row.
    """

    def __init__(self, index: EventIndex, window: Window, after: WindowCursor | None,
                 chunk: int = 2000):
        self._scan = index.scan(window, after=after, chunk=chunk)
        self.after = after
        self._next = 0  # the position of the next row read
        self._chunks: deque[tuple[int, Sequence[StoredEvent]]] = deque()  # in flight
        self._done = False
        self._last: WindowCursor | None = None

    async def next_chunk(self, timeout: float) -> Chunk | None:
        if self._done:
            return None
        rows = await anext(self._scan, None)
        if not rows:
            self._done = True
            return None
        last = rows[-1]
        self.after = WindowCursor(last.ts_ms, last.seq)
        first = self._next
        self._next = first + len(rows)
        self._chunks.append((first, rows))
        return Chunk(range(first, self._next), rows)

    async def aclose(self) -> None:
        await close_scan(self._scan)

    def cursor_at(self, key: int) -> WindowCursor | None:
        """The (ts, seq) of the row at position ``key`` (asked again after a failed write:
        the same answer). Called by one checkpoint writer at a time, on its thread, while
        the reader may append a chunk: it reads a snapshot of the chunks."""
        for first, rows in tuple(self._chunks):
            if key < first:
                break
            if key < first + len(rows):
                row = rows[key - first]
                return WindowCursor(row.ts_ms, row.seq)
        return self._last

    def event_seqs(self, keys: list[int]) -> list[int]:
        """See :class:`Slice`. Per chunk, one slice of its rows when the keys in it are
        consecutive (a replay mostly finishes runs of them), else one lookup per key; both
        in C. LookupError for a key of a chunk already forgotten (a bug: it was saved)."""
        seqs: list[int] = []
        i, n = 0, len(keys)
        for first, rows in tuple(self._chunks):
            if i == n:
                break
            if keys[i] < first:
                raise LookupError(f"position {keys[i]} was forgotten before it was saved")
            j = bisect_left(keys, first + len(rows), i)
            if j == i:
                continue
            low, high = keys[i] - first, keys[j - 1] - first
            if high - low == j - i - 1:  # consecutive
                seqs.extend(map(_SEQ, rows[low:high + 1]))
            else:
                seqs.extend(map(_SEQ, map(rows.__getitem__, map(sub, keys[i:j], repeat(first)))))
            i = j
        if i < n:
            raise LookupError(f"position {keys[i]} was not read yet")
        return seqs

    def saved(self, key: int) -> None:
        """Forget every chunk whose last row is saved; only then: a failed write asks
        again for the cursor and the seqs of positions it had asked for."""
        chunks = self._chunks
        while chunks:
            first, rows = chunks[0]
            if key < first + len(rows) - 1:
                break
            row = rows[-1]
            self._last = WindowCursor(row.ts_ms, row.seq)
            chunks.popleft()
