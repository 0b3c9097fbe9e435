"""Sequential readers of the log get several chunks per hop to a thread.

Why: ``EventLog.read`` is async so that a network backend can sit behind it, and this
backend answers it from a worker thread. Each such hop (wake a pool thread, win the GIL
back from a busy event loop, wake the loop) cost a sequential reader 16-34% of a 500-row
chunk's time against a synchronous read of the same rows. Readers of the log read chunk
after chunk (a live run catching up, a segment build, the profile follower): once a
reader got a *full* chunk and asks for the next one, that read fetches about
:data:`AHEAD_ROWS` rows (whole chunks of the reader's size) in one hop, hands out the
first chunk and keeps the rest, so its next reads take their rows without a hop. A
first read, and a read of fewer than :data:`MIN_LIMIT` rows (a look: a run's next event,
a page of the debugger), fetch only what they ask for.

Why not read the next rows in a thread *while* the reader works: that was tried. On a
busy machine, a thread that builds rows in Python contends for the GIL with the event
loop, and every hand-over waits for the OS to schedule the other thread; the pumps got
slower, not faster. Fewer, larger hops help in every case.

Why what is kept answers exactly what a read would (the contract, unchanged). A fetch of
the rows after ``after_seq`` up to ``upto_seq`` holds every row committed when it started,
up to a *known* seq: its last row's if it got as many as it asked for, else its
``upto_seq`` or the log's last seq then, whichever is lower. Appends only add seqs above
the log's last one, so later:

- a read of the next rows (same ``limit`` and ``types``, ``after_seq`` the last seq handed
  out; its ``upto_seq`` may differ: the profile follower reads up to the log's end, which
  moves) is answered from what was kept when its first ``limit`` rows up to its
  ``upto_seq`` are all known: as many as it asked for, or it stops at the known seq, or
  nothing was committed since (then nothing more exists); else it reads for itself;
- removals (retention, a person's erasure, the archive rewriting a file without some
  rows) call :meth:`Prefetcher.removed` once committed, which drops everything kept, and
  a fetch that started before that keeps nothing.

At most :data:`KEPT` readers' rows are kept; rows not taken within :data:`STALE_SECONDS`
are dropped when room is needed (their reader stopped), and when all are taken by fresher
ones nothing more is kept, so more readers than that never drop each other's rows (each
would pay a read for nothing). A fetch is an ordinary read on a worker thread: a reader
cancelled meanwhile leaves nothing behind but that read's end.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

from millpond.storage.models import StoredEvent

#: What a reader's next read is filed under: (after_seq, limit, types).
Key = tuple[int, int, frozenset[str] | None]


class Read(NamedTuple):
    """A read's arguments."""

    after_seq: int
    limit: int
    upto_seq: int | None
    types: frozenset[str] | None

    def key(self) -> Key:
        """What rows kept for this read are filed under (``upto_seq`` aside: see the
        module docstring)."""
        return self.after_seq, self.limit, self.types


class Fetch(NamedTuple):
    """One read to run for a reader, and what the log was when it was planned."""

    read: Read
    generation: int
    last_seq: int


class _Kept(NamedTuple):
    #: The rows of a fetch not handed out yet.
    rows: list[StoredEvent]
    #: How many of them the fetch would have held had it got as many as it asked for.
    asked: int
    #: The fetch's ``upto_seq`` (None: the end of the log), generation and last seq.
    upto_seq: int | None
    generation: int
    last_seq: int
    #: When the fetch was planned (``time.monotonic``): rows nobody takes go in time.
    started: float


#: Rows fetched per hop for a sequential reader (in whole chunks of its ``limit``).
AHEAD_ROWS = 2000
#: Reads of fewer rows fetch only what they ask for.
MIN_LIMIT = 100
#: Readers whose rows are kept at once.
KEPT = 16
#: Rows not taken for this long are dropped when room is needed.
STALE_SECONDS = 10.0
#: Readers remembered as sequential (their next key), at most.
EXPECTED = 64


class Prefetcher:
    """What :meth:`SQLiteEventLog.read` fetched for sequential readers beyond what they
    asked (see the module docstring). ``last_seq`` is the log's last committed seq."""

    def __init__(self, last_seq: Callable[[], int], *, ahead_rows: int = AHEAD_ROWS,
                 kept: int = KEPT):
        self._last_seq = last_seq
        self._ahead_rows = ahead_rows
        self._kept_max = kept
        self._kept: dict[Key, _Kept] = {}
        #: Next keys of readers that just got a full chunk (a sequential reader's mark).
        self._expected: OrderedDict[Key, None] = OrderedDict()
        self._lock = threading.Lock()
        #: Bumped by :meth:`removed`: what was fetched before then is not kept.
        self.generation = 0

    def take(self, read: Read) -> list[StoredEvent] | None:
        """The answer to ``read`` from rows kept for it, if they answer it, else None."""
        with self._lock:
            kept = self._kept.pop(read.key(), None)
        if kept is None or kept.generation != self.generation:
            return None
        rows = kept.rows
        upto = read.upto_seq
        end = len(rows) if upto is None else bisect.bisect_right(rows, upto, key=_seq)
        chunk = rows[:min(end, read.limit)]
        if len(chunk) < read.limit and not self._known(kept, upto):
            return None  # rows the fetch did not see may belong here: read again
        self._rest(read, chunk, kept)
        return chunk

    def plan(self, read: Read) -> Fetch:
        """The read to run for ``read``: more rows if its reader reads on in sequence."""
        key = read.key()
        with self._lock:
            sequential = key in self._expected
            if sequential:
                del self._expected[key]
        if sequential and read.limit >= MIN_LIMIT:
            read = read._replace(limit=max(1, self._ahead_rows // read.limit) * read.limit)
        return Fetch(read, self.generation, self._last_seq())

    def fetched(self, read: Read, fetch: Fetch, rows: list[StoredEvent]) -> list[StoredEvent]:
        """``fetch`` (planned for ``read``) got ``rows``: the answer to ``read``; the
        rest is kept for the reads that follow."""
        chunk = rows[:read.limit]
        self._rest(read, chunk, _Kept(rows, fetch.read.limit, fetch.read.upto_seq,
                                      fetch.generation, fetch.last_seq, time.monotonic()))
        return chunk

    def _rest(self, read: Read, chunk: list[StoredEvent], kept: _Kept) -> None:
        """``chunk`` (the first rows of ``kept``) answers ``read``: keep the rest, and
        mark the reader as sequential if it may read on."""
        if len(chunk) < read.limit or read.limit < MIN_LIMIT:
            return  # the tail or the end of an upto_seq (it waits or stops), or a look
        key = read._replace(after_seq=chunk[-1].seq).key()
        rest = kept.rows[read.limit:]
        with self._lock:
            if rest and kept.generation == self.generation and self._room():
                self._kept[key] = kept._replace(rows=rest, asked=kept.asked - read.limit)
                return
            self._expected[key] = None
            if len(self._expected) > EXPECTED:
                self._expected.popitem(last=False)

    def _known(self, kept: _Kept, upto: int | None) -> bool:
        """Whether ``kept.rows`` hold every row up to ``upto``."""
        if len(kept.rows) == kept.asked:  # as many as asked for: every row up to its last
            return upto is not None and upto <= kept.rows[-1].seq
        if kept.upto_seq is None and self._last_seq() == kept.last_seq:
            return True  # nothing committed since: it saw the whole log
        known = kept.last_seq if kept.upto_seq is None else min(kept.upto_seq, kept.last_seq)
        return upto is not None and upto <= known

    def _room(self) -> bool:
        """Whether one more reader's rows may be kept (called with the lock held)."""
        if len(self._kept) < self._kept_max:
            return True
        now = time.monotonic()
        for key, kept in list(self._kept.items()):
            if now - kept.started > STALE_SECONDS:
                del self._kept[key]
        return len(self._kept) < self._kept_max

    def removed(self) -> None:
        """Events left the log (committed): drop everything kept, and keep nothing of a
        fetch that started before now."""
        with self._lock:
            self.generation += 1
            self._kept = {}

    def close(self) -> None:
        """Let go of everything kept."""
        with self._lock:
            self._kept = {}
            self._expected.clear()


def _seq(row: StoredEvent) -> int:
    return row.seq
