"""The log's time index, in parts by seq: ``events_part_ts`` on ``((seq - 1) / size, ts)``.

Why parts: a window scan needs the hot rows in (ts, seq) order, but events arrive in
any event-time order, so each new entry lands on a random leaf of a time index. With
one index over the whole hot store (one to two million entries while archiving), a
10,000-event commit dirtied most of its leaves: about half a WAL page per event. Its
seal was worse: deleting a sealed range's entries, which were spread over every leaf,
rewrote the whole index four times per range. Keyed by part first, the index keeps
each seq range's entries together: commits dirty only the newest part's leaves, and a
sealed range's entries leave as one stretch of the index. A 10,000,000-row import with
archiving went from a median of 41,195 to 48,708 rows/s with parts the size of the
archive's range (1,000,000), and then from 48,340 to 57,495 with parts of 100,000 (see
:func:`part_size`; ``bench/import.py``, runs alternated in one sitting).

What it costs: a scan in time order reads each part the window's seqs touch and merges
them; SQLite merges the arms of a ``UNION ALL ... ORDER BY`` itself, each arm a seek
into its part, without sorting. A hot store holds 10 to 20 parts while archiving is on,
and one part per million events when it is off.

The part size is fixed when the index is made (:func:`part_size`) and read back from
the schema, so every connection, in any
process, builds the same expression; SQLite uses an expression index only for a query
that spells the expression the same way.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

#: Seqs per part of a log made with archiving off (see :func:`part_size`).
DEFAULT_PART_SEQS = 1_000_000
#: Seqs per part of a log made with archiving on (see :func:`part_size`).
ARCHIVING_PART_SEQS = 100_000
#: Parts one statement merges at most. Why a cap: SQLite allows 500 arms in a compound
#: SELECT, and a log past that many parts (archiving off) is read in groups of arms.
MAX_ARMS = 100
INDEX = "events_part_ts"
#: The index before parts (one ``(ts)`` index); replaced when a log made with it opens.
LEGACY_INDEX = "events_ts"
log = logging.getLogger("millpond.log")
_SIZE = re.compile(r"\(\s*seq\s*-\s*1\s*\)\s*/\s*(\d+)")


@dataclass(frozen=True)
class TimeIndex:
    """The time index of one log file: its part size and the SQL that reads it."""

    part_seqs: int

    @property
    def part(self) -> str:
        """The part of a row, spelled as the index spells it."""
        return f"(seq - 1) / {self.part_seqs}"

    def schema(self) -> str:
        return f"CREATE INDEX IF NOT EXISTS {INDEX} ON events({self.part}, ts);"

    def part_of(self, seq: int) -> int:
        return (seq - 1) // self.part_seqs

    def parts(self, after: int, upto: int) -> range:
        """The parts that hold seqs ``after < seq <= upto``."""
        if upto <= after:
            return range(0)
        return range(self.part_of(max(after, 0) + 1), self.part_of(upto) + 1)

    @staticmethod
    def groups(parts: range) -> list[range]:
        """``parts`` in groups of at most :data:`MAX_ARMS` (one statement each)."""
        return [parts[i:i + MAX_ARMS] for i in range(0, len(parts), MAX_ARMS)]

    def ordered(self, select: str, where: str, parts: Sequence[int]) -> str:
        """``SELECT {select} FROM events WHERE {where}`` in (ts, seq) order over ``parts``
        (at most :data:`MAX_ARMS`), ending in ``ORDER BY ts, seq``; ``where`` uses
        numbered or named parameters, which every arm shares."""
        arms = [f"SELECT {select} FROM events INDEXED BY {INDEX}"
                f" WHERE {self.part} = {int(k)} AND {where}" for k in parts]
        return " UNION ALL ".join(arms) + " ORDER BY ts, seq"

    def count(self, conn: sqlite3.Connection, parts: range, where: str,
              params: Sequence[object]) -> int:
        """How many rows of ``parts`` match ``where``: SQLite seeks each listed part of
        the index, which holds (part, ts, rowid), so no table page is read for a
        condition on ts and seq."""
        return sum(conn.execute(
            f"SELECT COUNT(*) FROM events WHERE {self.part} IN"
            f" ({','.join(str(int(k)) for k in group)}) AND {where}", params).fetchone()[0]
            for group in self.groups(parts))


def part_size(archive_range: int) -> int:
    """The part size for a new log. With archiving on, the hot store holds a range or
    two, and the smaller the newest part, the fewer leaves a commit dirties: appending
    600,000 events with random event times in 5,000-event commits wrote 2.31 KiB per
    event with parts of 1,000,000 seqs and 1.38 with parts of 100,000, for 8.4 and 7.2
    CPU-µs (``bench/time_index.py``); a 10,000,000-row import went from 48,340 to 57,495
    rows/s, the seal merging 10 parts instead of one (``bench/import.py``, medians). Not
    smaller, nor tied to the range: the size outlives the setting, and tiny parts would
    make every scan merge thousands of them if archiving were turned off later. With
    archiving off, the hot store is the whole log, so parts are larger: fewer to merge."""
    return ARCHIVING_PART_SEQS if archive_range > 0 else DEFAULT_PART_SEQS


def ensure(conn: sqlite3.Connection, part_seqs: int) -> TimeIndex:
    """Make the index if the log has none (with ``part_seqs``), replacing the
    unpartitioned one of older logs; the log's :class:`TimeIndex`."""
    legacy = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?",
                          (LEGACY_INDEX,)).fetchone()
    found = of(conn)
    if found is None:
        found = TimeIndex(part_seqs)
        if legacy:
            log.info("indexing the log by part and event time (once, for a log made before "
                     "parts)", extra={"phase": "time_index"})
        conn.execute(found.schema())
    if legacy:
        conn.execute(f"DROP INDEX {LEGACY_INDEX}")
    return found


def of(conn: sqlite3.Connection) -> TimeIndex | None:
    """The log's time index as its schema says (None before :func:`ensure` made it)."""
    row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?",
                       (INDEX,)).fetchone()
    if row is None:
        return None
    size = _SIZE.search(row[0])
    if size is None:
        raise RuntimeError(f"unexpected definition of {INDEX}: {row[0]}")
    return TimeIndex(int(size.group(1)))
