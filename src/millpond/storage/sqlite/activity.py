"""The per-person event index: for each user id and anonymous id, its events in event time.

A person's activity log (the console's People page, segments later) asks for "the newest
events of these ids". The log itself has no index on its id columns, and adding one
would make every group commit of the collector update another B-tree keyed by random
ids. So this index lives apart, in ``activity.db``, and is built *off the append path*:
a thread follows the log like the profile follower, woken after commits and coalescing
them (:data:`COALESCE_SECONDS`), and copies each new event's (id, ts, seq) with one
``INSERT ... SELECT`` from the log file attached (and only read), sorted by key so each
tick walks the B-tree once; the copying runs inside SQLite, without Python per row. The
collector's commit waits for none of it, and the log's single write lock is never
taken: the index has its own file and lock.

An event belongs to the person of its ``userId`` when it has one, else of its
``anonymousId`` (Segment's rule: a user id, once known, is who did it), so each event
has one index entry.

A query first catches up with everything committed (usually little: the thread trails
by half a second when the collector is quiet, a few seconds at most under a full load:
:data:`REST_FACTOR`), so answers are as current as the log. A page reads at most
``limit`` index entries per id (each id's entries are one range of the primary key
(id, ts, seq), read backwards from the cursor) and merges them, then fetches those
bodies by seq: its cost does not grow with the log, nor with the person's history.
"""

from __future__ import annotations

import heapq
import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from itertools import islice
from pathlib import Path

from millpond.background import lower_this_thread
from millpond.storage.contracts import StorageUnavailable
from millpond.storage.models import StoredEvent, WindowCursor
from millpond.storage.sqlite.connection import connect, immediate
from millpond.storage.sqlite.log import SQLiteEventLog

log = logging.getLogger("millpond.storage")

SCHEMA = """
CREATE TABLE IF NOT EXISTS person_events (
    id TEXT NOT NULL,
    ts INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (id, ts, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
"""
#: Page cache of the writing connection, KiB. Ids are random, so each tick's new rows
#: land all over the B-tree and a cache holds only a share of its leaves however large
#: it is (the index grows with the log: about 40 bytes an event); the interior pages
#: that every insert walks stay cached, and a leaf missed is read from the OS's file
#: cache. At 64 MiB this cache was a part of an import's RSS that grew with its rows
#: (9 MiB after 300,000 events, and growing with the index); the follower is off the
#: append path, so a missed leaf costs its tick a read, not the collector a wait.
CACHE_KIB = 16384
#: Log events indexed per transaction while catching up.
CHUNK = 50_000
#: Let commits pile up this long before indexing them: one transaction per interval.
#: Larger ticks cost less per event (2.6 us of CPU at 5,000 events a tick, 4.5 us at
#: 1,000: measured in the commit that set this), and a query catches up anyway.
COALESCE_SECONDS = 0.5
#: After a tick the follower rests this many times as long as the tick took (between
#: :data:`COALESCE_SECONDS` and :data:`MAX_REST_SECONDS`), so it is busy a tenth of the
#: time at most. Why: its ids are random, so a tick rewrites leaf pages all over the
#: index (most of them while it is small), and the log's next fsync waits for those
#: writes too (the file system flushes them with its journal). Ticking every half second
#: under a full collector load held a log commit behind each tick (90-115 ms instead of
#: 30-40) and doubled ``/v1/batch``'s p99; fewer, larger ticks rewrite each page once for
#: more events. Queries and seals still catch up first, so none reads a stale index.
REST_FACTOR = 10
MAX_REST_SECONDS = 5.0
#: The follower also looks once a second, in case a commit's nudge came before it waited.
IDLE_SECONDS = 1.0
#: Far above any seq or time: "no upper bound".
_TOP = 1 << 62

_COPY = """
INSERT OR IGNORE INTO person_events (id, ts, seq)
SELECT coalesce(user_id, anonymous_id) AS person, ts, seq FROM log.events
WHERE seq > ? AND seq <= ? AND person IS NOT NULL
ORDER BY person, ts, seq
"""


class PersonIndex:
    """The index and the thread that keeps it; see the module docstring."""

    def __init__(self, path: str | Path, event_log: SQLiteEventLog):
        self.path = str(path)
        self._log = event_log
        self._write = connect(self.path, "NORMAL", cache_kib=CACHE_KIB)
        self._write.executescript(SCHEMA)
        self._write.execute("ATTACH DATABASE ? AS log", (event_log.path,))  # only read
        self._read = connect(self.path, "NORMAL", cache_kib=16384)
        self._read.execute("PRAGMA query_only=1")
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        row = self._write.execute("SELECT value FROM meta WHERE key = 'position'").fetchone()
        self._position = 0 if row is None else int(row[0])
        self._due = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._follow, name="millpond-person-index",
                                        daemon=True)
        self._thread.start()

    # -- keeping up --------------------------------------------------------------------
    def nudge(self) -> None:
        """The log committed: index it soon (called on the log's writer thread; cheap)."""
        self._due.set()

    def position(self) -> int:
        """The last log seq indexed."""
        return self._position

    def _current(self) -> None:
        """Catch up before a query; a failure (a full disk) is the store being
        unavailable, not a wrong answer from a stale index."""
        try:
            self.catch_up()
        except sqlite3.OperationalError as exc:
            raise StorageUnavailable(f"the per-person index cannot catch up: {exc}") from None

    def catch_up(self) -> int:
        """Index every event committed so far; how many log seqs it covered."""
        with self._write_lock:
            if self._closed:
                return 0
            target = self._log.last_seq()
            start = self._position
            while self._position < target:
                upto = min(target, self._position + CHUNK)
                with immediate(self._write) as conn:
                    conn.execute(_COPY, (self._position, upto))
                    conn.execute("INSERT OR REPLACE INTO meta (key, value)"
                                 " VALUES ('position', ?)", (upto,))
                self._position = upto
            return self._position - start

    def _follow(self) -> None:
        lower_this_thread()  # the collector's requests first (millpond.background)
        while not self._stop.is_set():
            self._due.wait(IDLE_SECONDS)
            if self._stop.is_set():
                break
            self._due.clear()
            started = time.perf_counter()
            try:
                self.catch_up()
            except StorageUnavailable:  # a full disk: the storage logs the episode, once
                self._stop.wait(1.0)
                self._due.set()  # what was committed meanwhile is still to index
                continue
            except sqlite3.Error:
                log.exception("person index failed to catch up; retrying in 1 s")
                self._stop.wait(1.0)
                continue
            took = time.perf_counter() - started
            self._stop.wait(min(MAX_REST_SECONDS, max(COALESCE_SECONDS, REST_FACTOR * took)))

    # -- reading -----------------------------------------------------------------------
    def events(self, ids: Sequence[str], before: WindowCursor | None,
               limit: int) -> list[StoredEvent]:
        """See ``EventIndex.person_events``; blocking."""
        self._current()
        out: list[StoredEvent] = []
        cursor = (before.ts, before.seq) if before is not None else (_TOP, _TOP)
        while len(out) < limit:
            wanted = limit - len(out)
            keys = self._newest(ids, cursor, wanted)
            if not keys:
                break
            bodies = self._bodies(keys)
            # an indexed event may have been removed from the log since (retention)
            out.extend(StoredEvent(seq, ts, bodies[seq]) for ts, seq in keys if seq in bodies)
            if len(keys) < wanted:
                break
            cursor = keys[-1]
        return out

    def _newest(self, ids: Sequence[str], cursor: tuple[int, int],
                limit: int) -> list[tuple[int, int]]:
        """The first ``limit`` (ts, seq) of ``ids`` before ``cursor``, newest first:
        ``limit`` per id at most, merged."""
        with self._read_lock:
            runs = [self._read.execute(
                "SELECT ts, seq FROM person_events WHERE id = ? AND (ts, seq) < (?, ?)"
                " ORDER BY ts DESC, seq DESC LIMIT ?", (i, *cursor, limit)).fetchall()
                for i in dict.fromkeys(ids)]
        # each event has one entry (under one id), so the runs never share a key
        return list(islice(heapq.merge(*runs, reverse=True), limit))

    def _bodies(self, keys: list[tuple[int, int]]) -> dict[int, bytes]:
        """The bodies of the (ts, seq) ``keys`` still stored, by seq: from the hot log,
        else (archived since they were indexed) from the archive, in one read of each
        file that holds some."""
        seqs = [seq for _ts, seq in keys]
        marks = ",".join("?" * len(seqs))
        with self._log.reading() as conn:
            found = dict(conn.execute(f"SELECT seq, body FROM events WHERE seq IN ({marks})",
                                      seqs).fetchall())
        archive = self._log.archive
        if archive is not None and len(found) < len(seqs):
            gone = [(ts, seq) for ts, seq in keys if seq not in found]
            archived = archive.bodies([seq for _ts, seq in gone], [ts for ts, _seq in gone])
            found.update((seq, event.body) for seq, event in archived.items())
        return found

    def count(self, ids: Sequence[str]) -> int:
        """How many distinct events ``ids`` have; blocking."""
        self._current()
        unique = list(dict.fromkeys(ids))
        if not unique:
            return 0
        marks = ",".join("?" * len(unique))
        with self._read_lock:  # one entry per event: a count of index rows
            return self._read.execute(
                f"SELECT COUNT(*) FROM person_events WHERE id IN ({marks})", unique
            ).fetchone()[0]

    def close(self) -> None:
        """Stop the follower and release the file. Idempotent."""
        self._stop.set()
        self._due.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        with self._write_lock, self._read_lock:
            if self._closed:
                return
            self._closed = True
            self._write.close()
            self._read.close()
