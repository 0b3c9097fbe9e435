"""The SQLite log's archive tier: sealed seq ranges moved from ``log.db`` to Parquet files
(:mod:`millpond.storage.archive.files`), listed in a manifest in ``log.db`` itself.

Why the manifest lives in the log's own file: a range moves with one SQLite transaction,
``INSERT`` the file into the manifest, after the file was written and fsynced; from that
commit on, reads take the range from the file (hot reads start after the archived
ranges), and its hot copies, which no read returns, are deleted after it (a chunk per
transaction: :func:`_delete_archived`). A SIGKILL before that commit leaves the rows hot
and an unlisted file (removed at the next open); after it, the rows are read from the
listed file only, and copies left hot are deleted at the next open. Either way every
event is read from exactly one tier: none lost, none twice.

A range ``(k * size, (k + 1) * size]`` is *sealed* once the log's last seq passed its
end: every seq in it is assigned and committed, so nothing can join it. A thread seals
ranges as the log grows (woken after commits, like the per-person index), on the log's
maintenance connection, so sealing and retention take turns; the file itself is written by
a process of its own (:mod:`.seal_process`: the writing would hold the server's GIL).

Dedupe stays exact: the dedupe table keeps each key's 64-bit hash and seq (16 bytes an
event), and a hash hit whose seq is archived is confirmed against the archived row
(:meth:`SQLiteArchive.key_of`).
"""

# pyright: basic
# (pyarrow ships no type information: strict mode would flag every call into it)

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence

from millpond.storage.archive import files
from millpond.storage.archive.files import FileStats
from millpond.storage.archive.place import Place
from millpond.storage.archive.reader import ArchiveReader
from millpond.storage.models import Expiry, add_owners, owners_of
from millpond.storage.sqlite import retention
from millpond.storage.sqlite.connection import immediate
from millpond.storage.sqlite.seal_process import SealProcess

log = logging.getLogger("millpond.storage")

SCHEMA = """
CREATE TABLE IF NOT EXISTS archive_files (
    name TEXT PRIMARY KEY, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL,
    ts_min INTEGER NOT NULL, ts_max INTEGER NOT NULL, events INTEGER NOT NULL,
    bytes INTEGER NOT NULL
) WITHOUT ROWID;
"""
#: The maintenance connection's page cache while it deletes a sealed range, KiB (it goes
#: back to its own size after). Why larger than the connection's 2 MiB: the delete walks
#: the range's rows in seq order, and each row's time-index entry sits at a random place
#: in its part of that index (a 1,000,000-seq part, as logs made before parts of
#: 100,000 have, is about 20 MiB of leaves).
#: When those leaves did not fit, each was read, dirtied, spilled to the WAL and read
#: again many times over: with 16 MiB a 250,000-seq chunk wrote 380 MB to the WAL, with
#: 32 MiB 105 MB, and the delete's CPU fell by a fifth (``bench/import.py``, 3,000,000
#: rows, per-chunk counts from ``/proc``).
DELETE_CACHE_KIB = 32768
#: Seqs whose hot copies one transaction deletes after a seal (see
#: :func:`_delete_archived`): 0.55-0.75 s of the write lock at a time here. Why not
#: fewer: each transaction rewrites the part's index leaves its rows' entries sit on,
#: nearly all of them, so small chunks rewrite them many times over (measured when the
#: time index was one: a 10,000,000-row import with 1,000,000-event ranges, one run
#: each: 37,600 rows/s with 20,000-seq chunks, 40,600 with 200,000, 43,200 with the
#: whole range in one transaction).
DELETE_CHUNK = 250_000

class SQLiteArchive(ArchiveReader):
    """The manifest, sealing, and reads of archived rows; see the module docstring.

    ``place`` is where files live (a directory or a bucket); ``conn`` the log's maintenance
    write connection to ``log.db``, used under ``lock``, which serializes sealing with the
    log's other maintenance (retention); ``last_seq()`` is the log's."""

    def __init__(self, place: Place, range_size: int, conn: sqlite3.Connection,
                 lock: threading.Lock, last_seq):
        super().__init__(place)
        self.range_size = range_size
        self._conn = conn
        self._lock = lock
        self._last_seq = last_seq
        conn.executescript(SCHEMA)
        #: The log's file (the sealing process reads it through a connection of its own).
        self._path = conn.execute("PRAGMA database_list").fetchone()[2]
        self._sealer = SealProcess()
        self._listed([FileStats(*r) for r in conn.execute(
            "SELECT name, first_seq, last_seq, ts_min, ts_max, events, bytes"
            " FROM archive_files ORDER BY first_seq")])
        #: Called before a range is sealed: indexes built from the hot rows (the
        #: per-person index copies from ``events``) catch up first.
        self.before_seal: list[Callable[[], object]] = []
        self._remove_unlisted()
        # A seal interrupted after listing its file leaves hot copies no read returns.
        _delete_archived(conn, 0, self.archived_upto())
        self._due = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="millpond-archiver",
                                        daemon=True)

    def start(self) -> None:
        """Start sealing in the background (once :attr:`before_seal` is wired)."""
        self._thread.start()

    def _remove_unlisted(self) -> None:
        """Files an interrupted seal left (never in the manifest, so never counted)."""
        listed = {f.name for f in self._files}
        for name in self.place.names() - listed:
            self.place.remove(name)

    # -- sealing -------------------------------------------------------------------------
    def nudge(self, last_seq: int) -> None:
        """The log committed up to ``last_seq`` (called on its writer thread): wake the
        sealer only when a whole range waits. Waking it after every commit made a thread
        take the GIL from the collector hundreds of times a second to find nothing to
        do; the sealer still looks once a second on its own."""
        if last_seq >= self.archived_upto() + self.range_size:
            self._due.set()

    def seal_once(self) -> FileStats | None:
        """Move the next sealed range to a file, if there is one; its stats."""
        with self._lock:
            first = self.archived_upto() + 1
            last = self.archived_upto() + self.range_size
            if self._last_seq() < last:
                return None
            for catch_up in self.before_seal:
                catch_up()
            name = f"log-{first:015d}-{last:015d}.parquet"
            stats = self._sealer.write(self._path, self.place, name, first - 1, last)
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("INSERT INTO archive_files VALUES (?,?,?,?,?,?,?)",
                             (stats.name, stats.first_seq, stats.last_seq, stats.ts_min,
                              stats.ts_max, stats.events, stats.bytes))
                # Listed before the commit: from here on readers take the range from the
                # archive (hot reads start after archived_upto), so there is no moment at
                # which its rows are in neither tier, and the hot copies they no longer
                # read go below.
                self._files.append(stats)
                self._firsts.append(stats.first_seq)
                conn.execute("COMMIT")
            except BaseException:
                if self._files and self._files[-1] is stats:
                    self._files.pop()
                    self._firsts.pop()
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            _delete_archived(conn, first - 1, last)
        log.info("archived seqs %s..%s: %s events, %s bytes", first, last, stats.events,
                 stats.bytes, extra={"phase": "archived", "file": name, "events": stats.events})
        return stats

    def sealer_pids(self) -> list[int]:
        """The sealing process's id, once a seal started it."""
        return self._sealer.pids()

    def expire(self, source_id: str, before_ms: int) -> Expiry:
        """Retention over the archive, one file per call (the caller holds the lock): the
        first file holding events of ``source_id`` that arrived before ``before_ms`` is
        written again without them. New file first, then one transaction (manifest,
        ``dedupe_expired``, counts), then the old file goes: a SIGKILL leaves exactly one
        of them listed, the other is removed at open."""
        for f in self._files:
            gone = files.expired_rows(self.path(f), source_id, before_ms)
            if gone.num_rows == 0:
                continue
            keys = list(zip(gone["message_id"].to_pylist(), gone["ts"].to_pylist(),
                            strict=True))
            # a range emptied whole keeps an empty file: its place in seq order stays
            # listed (archived_upto), and what it held is gone with the old file
            self._replace(f, files.rewritten(self.path(f), source_id, before_ms),
                          lambda conn, keys=keys: retention.note_expired(
                              conn, source_id, before_ms, keys))
            return Expiry(len(keys), False, owners_of(zip(
                gone["user_id"].to_pylist(), gone["anonymous_id"].to_pylist(), strict=True)))
        return Expiry(0, True)

    def _replace(self, f: FileStats, rows: Iterator[list[files.Row]],
                 also: Callable[[sqlite3.Connection], None] | None = None) -> None:
        """Put a file written from ``rows`` in the place of ``f``: new file first, then one
        manifest transaction (with ``also``'s writes), then the old file goes, so a
        SIGKILL leaves exactly one of the two listed and the other is removed at open."""
        kept = self.place.write(files.rewritten_name(f.name), rows, f.first_seq, f.last_seq)
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM archive_files WHERE name = ?", (f.name,))
            conn.execute("INSERT INTO archive_files VALUES (?,?,?,?,?,?,?)",
                         (kept.name, kept.first_seq, kept.last_seq, kept.ts_min,
                          kept.ts_max, kept.events, kept.bytes))
            if also is not None:
                also(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._files[self._files.index(f)] = kept
        self.place.remove(f.name)

    def owners(self, ids: Sequence[str]) -> dict[str, bool]:
        """``PersonEraser.event_owners`` over the archived files."""
        owners: dict[str, bool] = {}
        with self._lock:
            for f in self._files:
                rows = files.people_rows(self.path(f), ids)
                add_owners(owners, owners_of(zip(rows["user_id"].to_pylist(),
                                                 rows["anonymous_id"].to_pylist(), strict=True)))
        return owners

    def erase(self, ids: Sequence[str]) -> int:
        """Write again, without the events of ``ids``, every file that holds any (a
        deletion of :mod:`millpond.regulations`); how many events went (see
        :meth:`_replace` for why a SIGKILL loses nothing)."""
        removed = 0
        with self._lock:
            for f in list(self._files):
                count = files.people_count(self.path(f), ids)
                if not count:
                    continue
                self._replace(f, files.without_people(self.path(f), ids))
                removed += count
        return removed

    def _follow(self) -> None:
        while not self._stop.is_set():
            self._due.wait(1.0)
            if self._stop.is_set():
                break
            self._due.clear()
            try:
                while not self._stop.is_set() and self.seal_once() is not None:
                    pass
            except Exception:  # noqa: BLE001 - the hot rows stay; try again later
                log.exception("archiving failed; retrying in 5 s")
                self._stop.wait(5.0)

    def close(self) -> None:
        self._stop.set()
        self._due.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        self._sealer.close()


def _delete_archived(conn: sqlite3.Connection, after: int, upto: int) -> None:
    """Remove the hot copies of archived rows (seqs ``after < seq <= upto``, already
    listed in the manifest) from ``events``, :data:`DELETE_CHUNK` seqs per transaction.

    Why after the listing and in chunks, not in the listing's transaction: deleting a
    range of a million events takes seconds, and SQLite's one write lock was held all
    that time, so the log's writer (the collector's and an import's commits) waited for
    it: in a 2,500,000-row import with 1,000,000-event ranges the writer's ``BEGIN`` waited
    16.5 s in all, up to 6.3 s at a time. Between two chunks the writer commits (see
    :data:`DELETE_CHUNK` for their size). Nothing
    reads the copies: every read of the hot store starts after ``archived_upto``, and
    retention and erasure wait for the maintenance lock the seal holds; after a crash the
    archive's opening deletes what is left before anything reads.

    With ``secure_delete=FAST``: the rows' bytes are wiped from every page that stays in
    use, but pages the range empties go to the free list as they are, instead of each
    being overwritten with zeros (a second copy of the range through the WAL and the
    checkpoint: half the delete's writes, a quarter of its CPU). Why that keeps deletions
    traceless: those bytes are in the archive now, and a person's deletion rewrites the
    archive files and then scrubs ``log.db``
    (:meth:`~millpond.storage.sqlite.eraser.SQLiteEraser.scrub`), whose ``VACUUM``, or,
    for a log too large to vacuum, overwriting of every free page, leaves no free page
    holding what a seal left there. Everything else still deletes with ``secure_delete``
    on (retention, the eraser: their rows are gone for good). It runs with a larger page
    cache (:data:`DELETE_CACHE_KIB`)."""
    cache = conn.execute("PRAGMA cache_size").fetchone()[0]
    conn.execute("PRAGMA secure_delete=FAST")
    conn.execute(f"PRAGMA cache_size=-{DELETE_CACHE_KIB}")
    try:
        start = conn.execute("SELECT min(seq) FROM events WHERE seq > ? AND seq <= ?",
                             (after, upto)).fetchone()[0]
        while start is not None and start <= upto:
            end = min(start - 1 + DELETE_CHUNK, upto)
            with immediate(conn):
                conn.execute("DELETE FROM events WHERE seq >= ? AND seq <= ?", (start, end))
            start = end + 1
    finally:
        conn.execute("PRAGMA secure_delete=ON")
        # Back to its own size: SQLite frees the pages beyond it, so the larger cache
        # lasts only as long as the delete.
        conn.execute(f"PRAGMA cache_size={cache}")
