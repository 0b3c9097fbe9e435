"""The cluster backend's archive tier: sealed seq ranges of the JetStream stream moved to
Parquet files (:mod:`millpond.storage.archive.files`, in a bucket or a directory), listed
in a manifest table in PostgreSQL, then purged from the stream.

Why this order (file, manifest, purge): a file counts once the manifest lists it; the
stream is purged only after that commit. A crash before the commit leaves the messages in
the stream and an unlisted file (removed when the next archiver starts); a crash after it
leaves the messages in both tiers, and readers take seqs up to the manifest's last one
from the archive, so nothing is read twice; the next seal purges them. Every event is
readable at every moment, from exactly one tier.

Why the index rows stay in PostgreSQL: they are the log's index (windows, queries, a
person's events, retention's and a deletion's look-ups) and carry no bodies; keeping them
lets every index read work over both tiers unchanged, the bodies of archived seqs coming
from the files (:meth:`PgArchive.bodies`). The dedupe table keeps every key as before:
dedupe stays exact forever.

Why a range is sealed only after the index covers it: a process that crashed between its
PubAck and its index row leaves a stored event without a row (``nats/dedupe.py``); the
archiver first indexes what the stream holds in the range and the table lacks, so the file
(written from the index, in (ts, seq) order) misses nothing the stream had.

Other processes read the same manifest: theirs is a cached copy, refreshed when a read
finds a seq gone from the stream (purged since) or a file gone from the bucket (rewritten
since), so a stale copy costs a query, never an event.

Why a fence in PostgreSQL and not only a lock in the process: the archiver is whoever
holds the jobs lease, and a holder that stalls past its lease (a long GC pause, a VM
frozen, SIGSTOP) wakes up still sealing while the new holder runs deletions and retention.
Without a fence, a seal that read a range before a removal could list its file after it,
and the removed events would come back from the archive. So every removal and every
take-over of the archiver holds a PostgreSQL advisory lock (:data:`FENCE_LOCK`, session
level: a process killed mid-way releases it with its connection) and first bumps a
counter of the one-row table ``archive_fence`` (``removals``, ``sealer``), committed
before any data is touched; a seal reads both counters under the same lock before it
reads its range, and its listing transaction takes the lock again and lists the file
only if neither moved. A stale archiver's file is refused (and removed: each seal writes
a name of its own, so no seal ever overwrites another's file), and a removal that died
half-way still counts as one. Since a stale archiver can no longer list anything, a new
one removes every unlisted file at once when it takes over.
"""

# pyright: basic
# (pyarrow ships no type information: strict mode would flag every call into it)

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, LiteralString, Protocol, TypeVar

import psycopg

from millpond.storage.archive import files
from millpond.storage.archive.files import FileStats
from millpond.storage.archive.place import Place
from millpond.storage.archive.reader import ArchiveReader
from millpond.storage.contracts import StorageUnavailable
from millpond.storage.models import StoredEvent
from millpond.storage.postgres.connection import PgState

__all__ = ["PgArchive", "SealSource", "StaleArchiver"]

log = logging.getLogger("millpond.storage")
#: The advisory lock of removals, take-overs and listings (an arbitrary key; advisory
#: locks are per database, so the schema's name is the second half of the key).
FENCE_LOCK = 0x6D696C6C61726368
_R = TypeVar("_R")

SCHEMA = """
CREATE TABLE IF NOT EXISTS archive_files (
    name TEXT PRIMARY KEY, first_seq BIGINT NOT NULL, last_seq BIGINT NOT NULL,
    ts_min BIGINT NOT NULL, ts_max BIGINT NOT NULL, events BIGINT NOT NULL,
    bytes BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS archive_fence (
    one BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
    sealer BIGINT NOT NULL DEFAULT 0, removals BIGINT NOT NULL DEFAULT 0
);
INSERT INTO archive_fence (one) VALUES (true) ON CONFLICT DO NOTHING;
"""
#: Both halves of the fence's lock key: this schema's lock, not every schema's.
_LOCK_KEY = "hashtextextended(current_schema(), %s)"


class StaleArchiver(RuntimeError):
    """Another process took the archiver over since this one did: it seals no more."""


_ROWS = ("SELECT seq, ts, received, source_id, type, event, user_id, anonymous_id,"
         " message_id FROM events WHERE seq > %s AND seq <= %s ORDER BY ts, seq")


class SealSource(Protocol):
    """What sealing needs of the stream (blocking calls, from the archiver's thread)."""

    def stream_bounds(self) -> tuple[int, int]:
        """(first seq, last seq) the stream holds now."""
        ...

    def index_upto(self, seq: int) -> None:
        """Index every message up to ``seq`` the stream holds and the index lacks."""
        ...

    def stream_bodies(self, seqs: Sequence[int]) -> dict[int, StoredEvent]:
        """The stream's messages at ``seqs`` (those it holds)."""
        ...

    def purge_upto(self, seq: int) -> None:
        """Remove every message up to ``seq`` from the stream."""
        ...

    def stream_delete(self, seqs: Sequence[int]) -> None:
        """Delete ``seqs`` from the stream (those gone already are no error)."""
        ...


class PgArchive(ArchiveReader):
    """The manifest in PostgreSQL, sealing, and the rewrites of retention and deletions;
    reads come from :class:`ArchiveReader`. Thread-safe."""

    def __init__(self, db: PgState, place: Place, range_size: int, stream: SealSource):
        super().__init__(place)
        self.range_size = range_size
        self._db = db
        self._stream = stream
        #: Serializes sealing with removals (retention, deletions) in this process (each
        #: thread has its own connection; the fence orders processes).
        self._maintenance = threading.RLock()
        #: The ``sealer`` counter of this archiver's take-over (None: not taken over).
        self._epoch: int | None = None
        db.create_tables(SCHEMA)

    # -- the manifest --------------------------------------------------------------------
    def refresh(self) -> None:
        """Read the manifest again (another process sealed or rewrote files)."""
        self._listed([FileStats(r["name"], r["first_seq"], r["last_seq"], r["ts_min"],
                                r["ts_max"], r["events"], r["bytes"])
                      for r in self._db.execute(
                          "SELECT name, first_seq, last_seq, ts_min, ts_max, events, bytes"
                          " FROM archive_files ORDER BY first_seq")])

    @contextmanager
    def _fenced(self, bump: LiteralString) -> Generator[None]:
        """Hold the fence's lock (session level, on this thread's connection) with
        ``bump`` (``sealer`` or ``removals``) counted and committed first: whoever read
        the counter before sees it moved, even if this process dies before the end."""
        db = self._db
        db.execute("SELECT pg_advisory_lock(" + _LOCK_KEY + ")", (FENCE_LOCK,))
        try:
            db.execute("UPDATE archive_fence SET " + bump + " = " + bump + " + 1")
            yield
        finally:
            with contextlib.suppress(StorageUnavailable):  # lost: released with it
                db.execute("SELECT pg_advisory_unlock(" + _LOCK_KEY + ")", (FENCE_LOCK,))

    def _fence(self, conn: psycopg.Connection[Any]) -> tuple[int, int]:
        """(sealer, removals), read in ``conn``'s transaction under the fence's lock (so
        never in the middle of a removal)."""
        conn.execute("SELECT pg_advisory_xact_lock(" + _LOCK_KEY + ")", (FENCE_LOCK,))
        row = conn.execute("SELECT sealer, removals FROM archive_fence").fetchone()
        assert row is not None
        return int(row["sealer"]), int(row["removals"])

    def take_over(self) -> None:
        """Become the archiver (the holder of the jobs lease calls this when its jobs
        start): from now on an archiver that took over before cannot list a file, so every
        file the manifest does not list is an interrupted seal's or rewrite's (never
        listed, never read) and is removed."""
        with self._maintenance, self._fenced("sealer"):
            row = self._db.execute("SELECT sealer FROM archive_fence").fetchone()
            assert row is not None
            self._epoch = int(row["sealer"])
            self.refresh()
            listed = {f.name for f in self._files}
            for name in self.place.names() - listed:
                self.place.remove(name)

    def retrying(self, read: Callable[[], _R]) -> _R:
        """``read()``, once more after a refresh if a file it opened is gone (rewritten by
        another process since this one read the manifest)."""
        try:
            return read()
        except (OSError, FileNotFoundError):
            self.refresh()
            return read()

    # -- sealing -------------------------------------------------------------------------
    def seal_once(self) -> FileStats | None:
        """Move the next sealed range to a file, if the stream is past its end; its stats.
        First finishes a purge a crash interrupted. None also when a removal ran since
        the range was read (tried again on the next call); :class:`StaleArchiver` when
        another process took the archiver over since this one did."""
        with self._maintenance:
            if self._epoch is None:
                self.take_over()
            with self._db.transaction() as conn:
                sealer, removals = self._fence(conn)
            if sealer != self._epoch:
                raise StaleArchiver("another process took the archiver over")
            self.refresh()
            upto = self.archived_upto()
            first_held, last = self._stream.stream_bounds()
            if upto and first_held <= upto:
                self._stream.purge_upto(upto)
            first, end = upto + 1, upto + self.range_size
            if last < end:
                return None
            self._stream.index_upto(end)
            # a name of this seal's own: a stale archiver's upload never replaces a file
            # another listed
            name = f"log-{first:015d}-{end:015d}.{secrets.token_hex(4)}.parquet"
            stats = self.place.write(name, self._rows(upto, end), first, end)
            with self._db.transaction() as conn:
                fence = self._fence(conn)
                added = fence == (sealer, removals) and conn.execute(
                    "INSERT INTO archive_files SELECT %s,%s,%s,%s,%s,%s,%s WHERE NOT EXISTS"
                    " (SELECT 1 FROM archive_files WHERE last_seq >= %s)",
                    (stats.name, stats.first_seq, stats.last_seq, stats.ts_min,
                     stats.ts_max, stats.events, stats.bytes, first)).rowcount > 0
            self.refresh()
            if not added:  # fenced off, or another archiver sealed it first
                self.place.remove(name)
                if fence[0] != sealer:
                    raise StaleArchiver("another process took the archiver over")
                return None
            self._stream.purge_upto(end)
        log.info("archived seqs %s..%s: %s events, %s bytes", first, end, stats.events,
                 stats.bytes, extra={"phase": "archived", "file": name, "events": stats.events})
        return stats

    def _rows(self, after: int, upto: int) -> Iterator[list[files.Row]]:
        """The range's rows in (ts, seq) order, a row group at a time: the index's rows
        (sorted by the server, streamed through a server-side cursor), each with its body
        from the stream. A row whose message is gone (deleted by retention or a deletion
        whose index half a crash interrupted) is left out."""
        with self._db.transaction() as conn, conn.cursor(name="archive_seal") as cur:
            cur.execute(_ROWS, (after, upto))
            while chunk := cur.fetchmany(files.ROW_GROUP):
                bodies = self._stream.stream_bodies([r["seq"] for r in chunk])
                yield [(r["seq"], r["ts"], r["received"], r["source_id"], r["type"],
                        r["event"], r["user_id"], r["anonymous_id"], r["message_id"],
                        bodies[r["seq"]].body)
                       for r in chunk if r["seq"] in bodies]

    # -- removing ------------------------------------------------------------------------
    def delete(self, seqs: Sequence[int]) -> None:
        """Remove ``seqs`` from whichever tier holds them (retention, deletions): archived
        ones by writing their files again without them, the others from the stream.
        Idempotent: a seq gone already is no error. Fenced: a seal that read any of them
        before cannot list its file after."""
        with self._maintenance, self._fenced("removals"):
            self.refresh()
            top = self.archived_upto()
            self._stream.stream_delete([s for s in seqs if s > top])
            by_file: dict[str, list[int]] = {}
            for seq in seqs:
                if seq <= top and (f := self.file_of(seq)) is not None:
                    by_file.setdefault(f.name, []).append(seq)
            for f in list(self._files):
                gone = by_file.get(f.name)
                if gone and files.seqs_count(self.path(f), gone):
                    self._replace(f, gone)

    def _replace(self, f: FileStats, gone: Sequence[int]) -> None:
        """Put ``f`` written again without ``gone`` in its place: new file, one manifest
        transaction, then the old file goes (a crash leaves one of them listed)."""
        kept = self.place.write(files.rewritten_name(f.name), files.without_seqs(
            self.path(f), gone), f.first_seq, f.last_seq)
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM archive_files WHERE name = %s", (f.name,))
            conn.execute("INSERT INTO archive_files VALUES (%s,%s,%s,%s,%s,%s,%s)",
                         (kept.name, kept.first_seq, kept.last_seq, kept.ts_min,
                          kept.ts_max, kept.events, kept.bytes))
        self.refresh()
        self.place.remove(f.name)


    # -- reading -------------------------------------------------------------------------
    def read(self, after_seq: int, limit: int, upto_seq: int | None,
             types: frozenset[str] | None) -> list[StoredEvent]:
        """:meth:`ArchiveReader.read` on the manifest as it is now (one small query): a
        page may come from a span kept from before, and only a current manifest says
        whether its file is still the one listed (another process may have written it
        again without a deleted person's events)."""
        self.refresh()
        return super().read(after_seq, limit, upto_seq, types)
