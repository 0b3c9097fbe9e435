"""The log's next chunk, read before a sequential reader asks for it.

Why: ``EventLog.read`` is async so that a network backend can sit behind it, and this
backend answers it from a worker thread. Each such hop (wake a pool thread, win the GIL
back from a busy event loop, wake the loop) cost a sequential reader 16-34% of a 500-row
chunk's time against a synchronous read of the same rows. Readers of the log read chunk
after chunk (a live run catching up, a segment build, the profile follower), so once a
read returns a *full* chunk, the read of the next one starts at once on a thread: it runs
while the caller decodes and delivers this chunk, and the caller's next ``read`` usually
finds it done and takes it without a hop.

Why a read-ahead answers exactly what a read would (the contract, unchanged):

- appends only add seqs above the last committed one, so a *full* chunk read earlier is
  still the answer to the same read, whatever was appended since;
- a *short* chunk (the tail) is used only if nothing was committed since it started (the
  log's last seq is unchanged; it is set before an append returns or a ``wait`` wakes),
  or everything up to its ``upto_seq`` had already been committed then;
- removals (retention, a person's erasure, the archive rewriting a file without some
  rows) call :meth:`Prefetcher.removed` once committed, and a read-ahead started before
  that is dropped;
- a read-ahead that failed is dropped: the caller's own read runs, and raises if it fails
  again.

A read-ahead is keyed by the arguments of the read it answers; a few are kept (readers
at different places: several live runs, the profile follower), the oldest is dropped
beyond that. A dropped or never-taken read-ahead costs one read; its connection goes
back to the log's spares as the read ends. The threads are a small pool the log owns and
joins when it closes, so a reader that stops or is cancelled leaves no thread behind.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

from millpond.storage.models import StoredEvent


class Read(NamedTuple):
    """A read's arguments: what a read-ahead answers."""

    after_seq: int
    limit: int
    upto_seq: int | None
    types: frozenset[str] | None


class _Ahead(NamedTuple):
    future: Future[list[StoredEvent]]
    #: :attr:`Prefetcher.generation` and the log's last seq when the read was started.
    generation: int
    last_seq: int


#: Read-aheads kept at once (one per sequential reader; each holds one chunk).
KEPT = 8
#: Threads reading ahead (the log's reads are a fast indexed range scan each).
THREADS = 2


class Prefetcher:
    """Read-aheads of :meth:`SQLiteEventLog.read` (see the module docstring).

    ``read`` does one read, blocking; ``last_seq`` is the log's last committed seq."""

    def __init__(self, read: Callable[[Read], list[StoredEvent]], last_seq: Callable[[], int],
                 kept: int = KEPT, threads: int = THREADS):
        self._read = read
        self._last_seq = last_seq
        self._kept = kept
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="millpond-log-read-ahead")
        self._ahead: dict[Read, _Ahead] = {}
        self._lock = threading.Lock()
        self._closed = False
        #: Bumped by :meth:`removed`: read-aheads started before then are dropped.
        self.generation = 0

    async def take(self, read: Read) -> list[StoredEvent] | None:
        """The read-ahead of ``read`` if there is one that answers it now (waiting for it
        to finish if it is still running), else None: the caller reads for itself."""
        with self._lock:
            ahead = self._ahead.pop(read, None)
        if ahead is None:
            return None
        future = ahead.future
        if not future.done():  # a finished one is taken without leaving the event loop
            # asyncio.wait: the caller's own cancel is raised here; the read-ahead's cancel
            # (evicted, closed) or failure is not, and means the caller reads for itself
            await asyncio.wait([asyncio.wrap_future(future)])
        if future.cancelled() or future.exception() is not None:
            return None
        rows = future.result()
        if ahead.generation != self.generation:
            return None
        if len(rows) == read.limit or self._last_seq() == ahead.last_seq or (
                read.upto_seq is not None and ahead.last_seq >= read.upto_seq):
            return rows
        return None

    def follow(self, read: Read, rows: list[StoredEvent]) -> None:
        """``rows`` answered ``read``: if the reader may go on with a full next chunk,
        start reading it."""
        if len(rows) < read.limit or not rows:
            return  # the tail, or the end of an upto_seq: the reader waits or stops
        after = rows[-1].seq
        last = self._last_seq()
        if after >= last or (read.upto_seq is not None and after >= read.upto_seq):
            return  # nothing more yet
        following = read._replace(after_seq=after)
        with self._lock:
            if self._closed or following in self._ahead:
                return
            ahead = _Ahead(self._pool.submit(self._read, following), self.generation, last)
            self._ahead[following] = ahead
            if len(self._ahead) > self._kept:  # the oldest reader went away, most likely
                oldest = next(iter(self._ahead))
                self._ahead.pop(oldest).future.cancel()

    def removed(self) -> None:
        """Events left the log (committed): drop every read-ahead started before now."""
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
