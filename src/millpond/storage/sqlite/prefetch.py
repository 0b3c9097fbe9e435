"""The log's next chunks, read before a sequential reader asks for them.

Why: ``EventLog.read`` is async so that a network backend can sit behind it, and this
backend answers it from a worker thread. Each such hop (wake a pool thread, win the GIL
back from a busy event loop, wake the loop) cost a sequential reader 16-34% of a 500-row
chunk's time against a synchronous read of the same rows. Readers of the log read chunk
after chunk (a live run catching up, a segment build, the profile follower), so once a
read returns a *full* chunk, the next chunks (about :data:`AHEAD_ROWS` rows, at least
one chunk) are read at once on a thread: that runs while the caller decodes and delivers,
the caller's next reads find their rows ready and take them without a hop, and the read
after those starts as the first of them is taken. One hop per :data:`AHEAD_ROWS` rows,
overlapped with the caller's work. Reads of fewer than :data:`MIN_LIMIT` rows are looks
(a run's next event, a page of the debugger), not scans: they are not read ahead.

Why a read-ahead answers exactly what a read would (the contract, unchanged). A
read-ahead of the rows after ``after_seq`` up to ``upto_seq`` holds every row committed
when it started, up to a *known* seq: its last row's if it got as many as it asked for,
else its ``upto_seq`` or the log's last seq then, whichever is lower. Appends only add
seqs above the log's last one, so later:

- a read of the same rows (same ``after_seq``, ``limit`` and ``types``; its ``upto_seq``
  may differ: the profile follower reads up to the log's end, which moves) is answered
  from it when its first ``limit`` rows up to the read's ``upto_seq`` are all known: as
  many as the read asked for, or the read stops at the known seq, or nothing was
  committed since (then nothing more exists); else the caller reads for itself;
- removals (retention, a person's erasure, the archive rewriting a file without some
  rows) call :meth:`Prefetcher.removed` once committed, and everything read ahead before
  that is dropped;
- a read-ahead that failed is dropped: the caller's own read runs, and raises if it fails
  again.

At most :data:`KEPT` read-aheads are kept (a few sequential readers at once: live runs,
the profile follower, a segment build); one not taken within :data:`STALE_SECONDS` is
dropped (its reader stopped), and when all are taken by fresher ones no new one starts,
so more readers than that never drop each other's (each would pay a read for nothing). A
dropped read-ahead costs one read; its connection goes back to the log's spares as the
read ends. The threads are a small pool the log owns and joins as it closes, so a reader
that stops or is cancelled leaves no thread behind.
"""

from __future__ import annotations

import asyncio
import bisect
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

from millpond.storage.models import StoredEvent


class Read(NamedTuple):
    """A read's arguments."""

    after_seq: int
    limit: int
    upto_seq: int | None
    types: frozenset[str] | None

    def key(self) -> tuple[int, int, frozenset[str] | None]:
        """What a read-ahead for this read is filed under (``upto_seq`` aside: see the
        module docstring)."""
        return self.after_seq, self.limit, self.types


class _Ahead(NamedTuple):
    #: Rows after the read's ``after_seq``: a read of several chunks, or the rest of one.
    future: Future[list[StoredEvent]]
    #: How many rows it asked for (the rest of a read: what is left of that).
    asked: int
    #: The ``upto_seq`` it read to (None: the end of the log).
    upto_seq: int | None
    #: :attr:`Prefetcher.generation` and the log's last seq when the read started.
    generation: int
    last_seq: int
    #: When the read started (``time.monotonic``): one nobody takes is dropped in time.
    started: float


#: Rows read ahead per hop to a thread (in whole chunks of the caller's ``limit``).
AHEAD_ROWS = 2000
#: Reads of fewer rows are not read ahead.
MIN_LIMIT = 100
#: Read-aheads kept at once (about two per sequential reader: what it is taking, and the
#: read of what follows).
KEPT = 16
#: A read-ahead not taken for this long is dropped when room is needed.
STALE_SECONDS = 10.0
#: Threads reading ahead (each read is one indexed range scan).
THREADS = 2


class Prefetcher:
    """Read-aheads of :meth:`SQLiteEventLog.read` (see the module docstring).

    ``read`` does one read, blocking; ``last_seq`` is the log's last committed seq."""

    def __init__(self, read: Callable[[Read], list[StoredEvent]], last_seq: Callable[[], int],
                 *, ahead_rows: int = AHEAD_ROWS, kept: int = KEPT, threads: int = THREADS):
        self._read = read
        self._last_seq = last_seq
        self._ahead_rows = ahead_rows
        self._kept = kept
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="millpond-log-read-ahead")
        self._ahead: dict[tuple[int, int, frozenset[str] | None], _Ahead] = {}
        self._lock = threading.Lock()
        self._closed = False
        #: Bumped by :meth:`removed`: what was read ahead before then is dropped.
        self.generation = 0

    async def take(self, read: Read) -> list[StoredEvent] | None:
        """The answer to ``read`` if it was read ahead and still holds (waiting for that
        read if it is still running), else None: the caller reads for itself."""
        with self._lock:
            ahead = self._ahead.pop(read.key(), None)
        if ahead is None:
            return None
        future = ahead.future
        if not future.done():  # a finished one is taken without leaving the event loop
            # asyncio.wait: the caller's own cancel is raised here; the read-ahead's cancel
            # (dropped, closed) or failure is not, and means the caller reads for itself
            await asyncio.wait([asyncio.wrap_future(future)])
        if future.cancelled() or future.exception() is not None:
            return None
        rows = future.result()
        if ahead.generation != self.generation:
            return None
        upto = read.upto_seq
        end = len(rows) if upto is None else bisect.bisect_right(rows, upto,
                                                                  key=_seq)
        chunk = rows[:min(end, read.limit)]
        if len(chunk) < read.limit and not self._known(ahead, rows, upto):
            return None  # rows it did not see may belong here: read again
        if len(chunk) == read.limit < len(rows):  # the following chunks, for what follows
            rest: Future[list[StoredEvent]] = Future()
            rest.set_result(rows[read.limit:])
            self._keep(read._replace(after_seq=chunk[-1].seq),
                       ahead._replace(future=rest, asked=ahead.asked - read.limit))
        if len(rows) == ahead.asked == self._span(read.limit):
            self.follow(read._replace(after_seq=rows[-1].seq), rows)
        return chunk

    def _known(self, ahead: _Ahead, rows: list[StoredEvent], upto: int | None) -> bool:
        """Whether ``rows`` (what ``ahead`` read) hold every row up to ``upto``."""
        if len(rows) == ahead.asked:  # as many as it asked for: every row up to its last
            return upto is not None and upto <= rows[-1].seq
        if ahead.upto_seq is None and self._last_seq() == ahead.last_seq:
            return True  # nothing committed since: it saw the whole log
        known = ahead.last_seq if ahead.upto_seq is None else min(ahead.upto_seq,
                                                                  ahead.last_seq)
        return upto is not None and upto <= known

    def follow(self, read: Read, rows: list[StoredEvent]) -> None:
        """A reader got ``rows`` and may read on from ``read.after_seq``: if they were as
        many as it asked for, and more are committed, start reading the next ones."""
        if len(rows) < read.limit or read.limit < MIN_LIMIT:
            return  # the tail or the end of an upto_seq (the reader waits or stops), a look
        last = self._last_seq()
        if read.after_seq >= last or (read.upto_seq is not None
                                      and read.after_seq >= read.upto_seq):
            return  # nothing more yet
        key = read.key()
        with self._lock:
            if self._closed or key in self._ahead or not self._room():
                return
            asked = self._span(read.limit)
            future = self._pool.submit(self._read, read._replace(limit=asked))
            self._ahead[key] = _Ahead(future, asked, read.upto_seq, self.generation, last,
                                      time.monotonic())

    def _span(self, limit: int) -> int:
        """Rows read ahead for reads of ``limit``: whole chunks, at least one."""
        return max(1, self._ahead_rows // limit) * limit

    def _keep(self, read: Read, ahead: _Ahead) -> None:
        with self._lock:
            if ahead.generation == self.generation and not self._closed and self._room():
                self._ahead[read.key()] = ahead

    def _room(self) -> bool:
        """Whether one more read-ahead may be kept (called with the lock held)."""
        if len(self._ahead) < self._kept:
            return True
        now = time.monotonic()
        for key, ahead in list(self._ahead.items()):
            if now - ahead.started > STALE_SECONDS:
                del self._ahead[key]
                ahead.future.cancel()
        return len(self._ahead) < self._kept

    def removed(self) -> None:
        """Events left the log (committed): drop everything read ahead before now."""
        with self._lock:
            self.generation += 1
            dropped, self._ahead = self._ahead, {}
        for ahead in dropped.values():
            ahead.future.cancel()

    def close(self) -> None:
        """Stop reading ahead; returns once no read-ahead is running."""
        with self._lock:
            self._closed = True
            self._ahead.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)


def _seq(row: StoredEvent) -> int:
    return row.seq
