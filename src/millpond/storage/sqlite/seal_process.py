"""Writing a sealed range's Parquet file in a process of its own.

Why a process: writing a file is CPU-bound Python and pyarrow work (reading a million
rows by seq in event-time order, building Arrow arrays, zstd) that holds the GIL for
most of it. In a thread of the server it took turns with the log writer and the
collector for the GIL: every handover a futex wake-up and a context switch, each side
waiting for the other. A 3,000,000-row import sealing 1,000,000-event ranges ran at
36,600 rows/s on 45.6 CPU-s per million rows with the seal in a thread, and at 47,000
rows/s on 38.4 with it in a process (``bench/import.py``, same sitting): the log
writer alone took 20% less CPU, with no GIL handed back and forth.

The process only reads ``log.db`` (through a read-only connection) and writes the file
(``place.write``: whole or absent); listing the file and deleting the range's rows stay
on the log's maintenance connection in the server (:meth:`SQLiteArchive.seal_once`), so
a crash of either leaves what it left before: an unlisted file, removed at the next open.

Why the ``spawn`` start method and not the fork server the previews use: the sealer
needs SQLite and pyarrow only; a worker forked from the fork server carries the whole
catalog it preloaded. Started once, on the first seal, and kept (a start costs ~0.3 s
of importing). It dies with the server (``PR_SET_PDEATHSIG`` on Linux): a sealer left
running after a SIGKILL could otherwise finish its file after the next server removed
the unlisted ones.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING

from millpond.storage.sqlite import time_index
from millpond.workers import WorkerPool

if TYPE_CHECKING:  # loaded in the worker once its memory pool is chosen
    from millpond.storage.archive.files import FileStats, Row
    from millpond.storage.archive.place import Place

_COLUMNS = ("seq, ts, received, source_id, type, event, user_id, anonymous_id, message_id,"
            " body")
#: The sealing process's name in ``ps``/``top`` (Linux's limit is 15 characters).
PROCESS_NAME = b"millpond-sealer"


class SealProcess:
    """The worker process that writes sealed ranges' files; :meth:`close` stops it."""

    def __init__(self) -> None:
        self._pool = WorkerPool(1, start_method="spawn", initializer=_become_sealer,
                                initargs=(os.getpid(),))

    def write(self, db_path: str, place: Place, name: str, after: int,
              upto: int) -> FileStats:
        """Write seqs ``after < seq <= upto`` of the log at ``db_path`` as ``name`` in
        ``place``, in the worker. A worker that died (killed, out of memory, or with the
        thread that started it: ``PR_SET_PDEATHSIG`` follows that thread) is replaced
        once: writing a file again is harmless (whole or absent, under the same name)."""
        call = [(db_path, place, name, after, upto)]
        try:
            return self._pool.map(write_range, call)[0]
        except BrokenProcessPool:
            return self._pool.map(write_range, call)[0]

    def pids(self) -> list[int]:
        return self._pool.pids()

    def close(self) -> None:
        self._pool.close()


def write_range(db_path: str, place: Place, name: str, after: int, upto: int) -> FileStats:
    """In the sealing process: the file of the range, from :func:`range_rows`."""
    return place.write(name, range_rows(db_path, after, upto), after + 1, upto)


def range_rows(db_path: str, after: int, upto: int) -> Iterator[list[Row]]:
    """The range's rows in (ts, seq) order, a row group at a time, from a walk of the
    range's part of the time index (:mod:`.time_index`: its entries are (part, ts, seq),
    the file's order), reading their rows by seq as it goes. Nothing is sorted, so
    memory is the row group being written, and no row passes through Python before
    pyarrow takes it. A read-only connection of its own.

    Why each row group is a read transaction of its own, resuming after the last (ts,
    seq) read: a snapshot held for the whole file (seconds) keeps every checkpoint from
    passing it, so the WAL grew by all the writer committed meanwhile (600 MB in a
    10-million-row import), and every page lookup searches a longer WAL index. The range
    cannot change between two reads: it is sealed (no seq joins it) and the server holds
    the log's maintenance lock while the file is written (retention and the archive's
    erasure wait); a person's deletion may remove hot rows meanwhile, and the file it
    then still holds them in is rewritten by that deletion, after this seal (it waits
    for the lock)."""
    from millpond.storage.archive import files

    conn = sqlite3.connect(Path(db_path).as_uri() + "?mode=ro", uri=True, timeout=30,
                           isolation_level=None)
    index = time_index.of(conn)
    if index is None:
        raise RuntimeError(f"{db_path} has no time index")
    where = "ts >= ?3 AND (ts > ?3 OR seq > ?4) AND seq > ?1 AND seq <= ?2"
    # A range is one part, or a few when the log's parts are smaller than its ranges.
    query = index.ordered(_COLUMNS, where, index.parts(after, upto)) + " LIMIT ?5"
    try:
        ts, seq = -(1 << 63), -1
        while chunk := conn.execute(query, (after, upto, ts, seq,
                                            files.ROW_GROUP)).fetchall():
            ts, seq = chunk[-1][1], chunk[-1][0]
            yield chunk
            if len(chunk) < files.ROW_GROUP:
                break
    finally:
        conn.close()


def _become_sealer(parent: int) -> None:
    """In the worker, first: die with the server, say what this process is, and have
    Arrow allocate with jemalloc (unless the environment chose a pool): with pyarrow's
    default here (mimalloc) the sealer's peak RSS after a 400,000-event range was 143 MB,
    with jemalloc 108 MB, for the same CPU (2.03-2.08 against 2.10-2.21 s). Set before
    pyarrow loads, which this module leaves to the first seal: a pool chosen after that
    kept the first one's memory (128 MB)."""
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")
    with contextlib.suppress(OSError, AttributeError):  # not Linux: no such call
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        prctl(15, PROCESS_NAME)  # PR_SET_NAME
    if os.getppid() != parent:  # the server died before the call above
        os._exit(1)
