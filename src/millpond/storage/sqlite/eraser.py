"""Deleting people from the embedded store, file by file, so that no byte of them is left.

Why its own connections: each step opens a connection with ``secure_delete`` on (SQLite
then overwrites what it deletes with zeros instead of only unlinking it), takes the write
lock of one file for a bounded chunk at a time, and closes. The log's writer, the
profile follower and the pumps keep their own connections and wait a moment for the lock
(their busy timeout) while a chunk commits.

Why :meth:`SQLiteEraser.scrub` after the steps: a deleted row can still sit in a
write-ahead log (its earlier versions, in frames a passive checkpoint copied but never
truncated) and, in pages written before ``secure_delete`` was on, in free space. A
``TRUNCATE`` checkpoint empties each WAL, and ``VACUUM`` rewrites each file from its live
rows only. The log is vacuumed too while it is below :data:`VACUUM_LOG_BYTES` (every
connection of this backend has ``secure_delete`` on, so newer pages hold no freed
bytes); above that, rewriting it would hold the collector's writer for minutes, and the
archive tier (which rewrites sealed files) is the answer at that size.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from millpond.storage.models import add_owners, owners_of
from millpond.storage.sqlite import high_water
from millpond.storage.sqlite.connection import connect, immediate

if TYPE_CHECKING:
    from millpond.storage.sqlite.archive import SQLiteArchive

#: Log rows examined per write transaction while deleting a person's events.
CHUNK = 200_000
#: Below this size the log file is vacuumed by :meth:`SQLiteEraser.scrub`.
VACUUM_LOG_BYTES = 1 << 30
#: Bytes of zeros written per transaction while overwriting the log's free pages.
FILL_BYTES = 64 << 20
#: Seconds a truncating checkpoint keeps retrying while readers hold old snapshots.
CHECKPOINT_PATIENCE = 30.0


class SQLiteEraser:
    """:class:`~millpond.storage.contracts.PersonEraser` over one data dir's files."""

    def __init__(self, files: dict[str, Path]):
        self._files = files
        #: The archive tier, when on: its files that hold the people are written again.
        self.archive: SQLiteArchive | None = None

    @contextlib.contextmanager
    def _open(self, name: str) -> Generator[sqlite3.Connection]:
        conn = connect(self._files[name], "FULL")
        conn.execute("PRAGMA secure_delete=ON")
        try:
            yield conn
        finally:
            conn.close()

    # -- the log and its indexes ----------------------------------------------------------
    def _event_rows(self, ids: Sequence[str]) -> list[tuple[int, str | None, str | None]]:
        """(seq, user_id, anonymous_id) of the people's hot events, by a scan of the log
        in chunks (the log keeps no index on its id columns; see ``activity.py``)."""
        marks = _marks(ids)
        rows: list[tuple[int, str | None, str | None]] = []
        with self._open("log") as conn:
            top = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
            for start in range(0, top, CHUNK):
                rows.extend(conn.execute(
                    f"SELECT seq, user_id, anonymous_id FROM events WHERE seq > ? AND"
                    f" seq <= ? AND (user_id IN ({marks}) OR anonymous_id IN ({marks}))",
                    (start, start + CHUNK, *ids, *ids)))
        return rows

    def event_owners(self, ids: Sequence[str]) -> dict[str, bool]:
        if not ids:
            return {}
        owners = owners_of((user, anonymous) for _seq, user, anonymous in self._event_rows(ids))
        if self.archive is not None:
            add_owners(owners, self.archive.owners(ids))
        return owners

    def events(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        marks = _marks(ids)
        removed = 0
        with self._open("log") as conn:
            top = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
            with immediate(conn):
                high_water.keep(conn, top)
            for start in range(0, top, CHUNK):
                # Not the hot copies of archived rows a seal has yet to delete: the
                # archive's erasure below counts them (and the seal deletes them first).
                above = max(start, self.archive.archived_upto() if self.archive else 0)
                with immediate(conn):
                    removed += conn.execute(
                        f"DELETE FROM events WHERE seq > ? AND seq <= ? AND"
                        f" (user_id IN ({marks}) OR anonymous_id IN ({marks}))",
                        (above, start + CHUNK, *ids, *ids)).rowcount
        with self._open("activity") as conn, immediate(conn):
            conn.execute(f"DELETE FROM person_events WHERE id IN ({marks})", list(ids))
        if self.archive is not None:  # after the hot rows: a range sealed meanwhile is here
            removed += self.archive.erase(ids)
        return removed

    # -- state.db ---------------------------------------------------------------------------
    def dead_letters(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        seqs = [seq for seq, _user, _anonymous in self._event_rows(ids)]
        removed = 0
        with self._open("state") as conn, immediate(conn):
            for i in range(0, len(seqs), 500):
                part = seqs[i:i + 500]
                removed += conn.execute(
                    f"DELETE FROM dead_letters WHERE seq IN ({_marks(part)})", part).rowcount
            for one in ids:  # a payload mapped from the event names the person
                removed += conn.execute("DELETE FROM dead_letters WHERE instr(payload, ?) > 0",
                                        (one,)).rowcount
        return removed

    def rejections(self, ids: Sequence[str]) -> int:
        removed = 0
        with self._open("state") as conn, immediate(conn):
            for one in ids:
                removed += conn.execute(
                    "DELETE FROM rejections WHERE instr(body, CAST(? AS BLOB)) > 0",
                    (one,)).rowcount
        return removed

    # -- profiles.db and segments.db ----------------------------------------------------------
    def profiles(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        with self._open("profiles") as conn, immediate(conn):
            cids = [c for (c,) in conn.execute(
                f"SELECT DISTINCT cid FROM identities WHERE id IN ({_marks(ids)})", list(ids))]
            if not cids:
                return 0
            marks = _marks(cids)
            conn.execute(f"DELETE FROM profile_ids WHERE canon IN (SELECT id FROM identities"
                         f" WHERE cid IN ({marks}))", cids)
            for table in ("traits", "memberships", "search_terms", "identities"):
                conn.execute(f"DELETE FROM {table} WHERE cid IN ({marks})", cids)
            return conn.execute(f"DELETE FROM clusters WHERE cid IN ({marks})", cids).rowcount

    def segment_memberships(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        with self._open("segments") as conn, immediate(conn):
            people = [p for (p,) in conn.execute(
                f"SELECT DISTINCT person_id FROM member_ids WHERE identity IN ({_marks(ids)})"
                f" UNION SELECT person_id FROM members WHERE user_id IN ({_marks(ids)})"
                f" OR anonymous_id IN ({_marks(ids)})", [*ids, *ids, *ids])]
            if not people:
                return 0
            marks = _marks(people)
            conn.execute(f"DELETE FROM member_ids WHERE person_id IN ({marks})", people)
            conn.execute(f"DELETE FROM history WHERE person_id IN ({marks})", people)
            return conn.execute(f"DELETE FROM members WHERE person_id IN ({marks})",
                                people).rowcount

    # -- leaving no bytes behind ----------------------------------------------------------------
    def scrub(self) -> None:
        for name, path in self._files.items():
            if not path.exists():
                continue
            with self._open(name) as conn:
                _truncate_wal(conn)
                if name != "log" or path.stat().st_size < VACUUM_LOG_BYTES:
                    conn.execute("VACUUM")
                else:
                    _zero_free_pages(conn)
                _truncate_wal(conn)


def _zero_free_pages(conn: sqlite3.Connection) -> None:
    """Overwrite every free page of the file with zeros: in one transaction, fill the
    free list with zero blobs of at most :data:`FILL_BYTES` each (SQLite takes free
    pages before it grows the file, and writes each whole) until it is empty, then
    delete them (``secure_delete`` zeroes the pages they leave). For a log too large to
    vacuum: the archive's seals free the pages of archived rows without wiping them
    (``archive._delete_archived``), and a deleted person's archived events may be among
    them."""
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    with immediate(conn):
        conn.execute("CREATE TABLE IF NOT EXISTS scrub_fill (b BLOB NOT NULL)")
        while free := conn.execute("PRAGMA freelist_count").fetchone()[0]:
            conn.execute("INSERT INTO scrub_fill VALUES (zeroblob(?))",
                         (min(free * (page - 4), FILL_BYTES),))
        conn.execute("DELETE FROM scrub_fill")
        conn.execute("DROP TABLE scrub_fill")


def _truncate_wal(conn: sqlite3.Connection) -> None:
    """Checkpoint the whole WAL into the file and truncate it to zero bytes, retrying
    while a reader still uses an old snapshot."""
    deadline = time.monotonic() + CHECKPOINT_PATIENCE
    while True:
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        if not busy or time.monotonic() > deadline:
            return
        time.sleep(0.05)


def _marks(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))

