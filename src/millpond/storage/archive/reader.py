"""What every backend's archive tier reads the same way: the manifest's files (seq ranges,
event-time bounds) and the log's reads over them (by seq, by event-time window, by query),
skipping files by the manifest's bounds and row groups by their statistics.

Why a base class rather than a copy per backend: the embedded store keeps its manifest in
``log.db`` (:mod:`millpond.storage.sqlite.archive`), the cluster backend in PostgreSQL
(:mod:`millpond.storage.postgres.archive`); where the list of files comes from differs,
what a read does with it does not.
"""

# pyright: basic
# (pyarrow ships no type information: strict mode would flag every call into it)

from __future__ import annotations

import bisect
import heapq
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import msgspec
import pyarrow
import pyarrow.compute
import pyarrow.parquet

from millpond.storage.archive import files
from millpond.storage.archive.files import FileStats
from millpond.storage.archive.place import Place
from millpond.storage.models import EventQuery, StoredEvent, Window, WindowCursor

__all__ = ["ArchiveReader"]

#: pyarrow.compute's functions are made at import time: no checker can see them.
pc: Any = pyarrow.compute
pa: Any = pyarrow
pq: Any = pyarrow.parquet

#: Seqs a read by seq decodes at once and keeps (see :meth:`ArchiveReader._span`): at
#: ~500 bytes an event, ~10 MB a span.
SPAN = 20_000
#: Spans kept.
SPANS_KEPT = 4


class ArchiveReader:
    """Reads over the files of a manifest: ``_files`` in seq order (``_firsts`` their
    first seqs, for bisection), each in ``place``. A backend fills both."""

    def __init__(self, place: Place):
        self.place = place
        self._files: list[FileStats] = []
        self._firsts: list[int] = []
        self._spans: OrderedDict[tuple[str, int], Any] = OrderedDict()
        self._spans_lock = threading.Lock()

    def _listed(self, found: list[FileStats]) -> None:
        """Take ``found`` (in seq order) as the manifest."""
        self._files = found
        self._firsts = [f.first_seq for f in found]

    # -- what is archived ----------------------------------------------------------------
    def files(self) -> list[FileStats]:
        return list(self._files)

    def archived_upto(self) -> int:
        """The last seq of the archived ranges (0: none)."""
        files_ = self._files
        return files_[-1].last_seq if files_ else 0

    def path(self, f: FileStats) -> Any:
        """The file, for pyarrow to read (a path, or a random-access file in a bucket)."""
        return self.place.open(f.name)

    def file_of(self, seq: int) -> FileStats | None:
        i = bisect.bisect_right(self._firsts, seq) - 1
        if i < 0:
            return None
        f = self._files[i]
        return f if seq <= f.last_seq else None

    def refresh(self) -> None:
        """Read the manifest again. Here a no-op: the backend lists what this process
        seals and rewrites; a backend whose files other processes rewrite overrides it."""

    # -- reading -------------------------------------------------------------------------
    def scan_file(self, f: FileStats, upto_seq: int) -> Iterator[list[StoredEvent]]:
        """The events of ``f`` with ``seq <= upto_seq``, a row group at a time in the file's
        own order (event time), each row group decoded once. Blocking.

        Why: a read by seq of a file sorted by event time decodes every row group that
        holds one of the seqs asked for, which (when arrival and event times differ, as
        a backfill's do) is all of them for every page: reading a million archived
        events in seq order took 22 s, where order-free work (a segment build's scan)
        needs each once. If the file is rewritten meanwhile (a deletion or retention
        writes the range's next generation), the rest comes from its replacement, and
        the seqs already given are not given again."""
        given: list[Any] = []  # the seqs given so far (arrays: 8 bytes an event)
        current: FileStats | None = f
        while current is not None:
            done = pa.chunked_array(given, pa.int64()) if given else None
            try:
                file = pq.ParquetFile(self.path(current))
                for g in range(file.metadata.num_row_groups):
                    table = file.read_row_group(g, columns=["seq", "ts", "body"])
                    keep = pc.less_equal(table["seq"], upto_seq)
                    if done is not None:
                        keep = pc.and_(keep, pc.invert(pc.is_in(table["seq"], value_set=done)))
                    table = table.filter(keep)
                    if table.num_rows:
                        given.append(table["seq"].combine_chunks())
                        yield list(map(StoredEvent, table["seq"].to_pylist(),
                                       table["ts"].to_pylist(), table["body"].to_pylist()))
                return
            except OSError:  # gone (pyarrow's missing-file errors are OSErrors)
                self.refresh()
                following = self.file_of(f.first_seq)
                if following is None or following.name == current.name:
                    raise
                current = following

    def read(self, after_seq: int, limit: int, upto_seq: int | None,
             types: frozenset[str] | None) -> list[StoredEvent]:
        """Archived events after ``after_seq`` in seq order (see ``EventLog.read``)."""
        out: list[StoredEvent] = []
        top = (1 << 62) if upto_seq is None else upto_seq
        for f in self._files:
            if f.last_seq <= after_seq or len(out) >= limit:
                continue
            if f.first_seq > top:
                break
            start, end = max(after_seq, f.first_seq - 1), min(top, f.last_seq)
            while len(out) < limit and start < end:
                low = f.first_seq - 1 + (start - f.first_seq + 1) // SPAN * SPAN
                high = min(low + SPAN, f.last_seq)
                table = self._span(f, low, high)
                seq = table["seq"]
                table = table.filter(pc.and_(pc.greater(seq, start),
                                             pc.less_equal(seq, min(end, high))))
                if types is not None:
                    table = files.of_types(table, types)
                table = table.slice(0, limit - len(out))
                out.extend(map(StoredEvent, table["seq"].to_pylist(),
                               table["ts"].to_pylist(), table["body"].to_pylist()))
                start = high
        return out

    def _span(self, f: FileStats, low: int, high: int) -> Any:
        """The rows ``low < seq <= high`` of ``f`` sorted by seq, kept for the next pages.

        Why: a file is sorted by event time, so a page of consecutive seqs is spread over
        many of its row groups (all of them when event times are not in arrival order);
        decoding them for every page of 1,000 cost a pass over the file per page. A span
        of :data:`SPAN` seqs is decoded once and serves every page in it; the last
        :data:`SPANS_KEPT` spans stay (several readers at different places: live feeds,
        the profile follower, a first sync). A file is never written again under its
        name (a rewrite takes the next generation's), so a kept span is never stale."""
        key = (f.name, low)
        with self._spans_lock:
            table = self._spans.get(key)
            if table is not None:
                self._spans.move_to_end(key)
                return table
        table = files.by_seq(self.path(f), low, high, ("seq", "ts", "body", "type"))
        with self._spans_lock:
            self._spans[key] = table
            while len(self._spans) > SPANS_KEPT:
                self._spans.popitem(last=False)
        return table

    def bodies(self, seqs: Sequence[int], ts: Sequence[int] | None = None,
               ) -> dict[int, StoredEvent]:
        """The archived events at ``seqs`` (those the archive holds), by seq; ``ts``, each
        seq's event time when known (the index's), picks row groups by time as well.

        Why not :meth:`get` for each: a person's events are spread over the files, and a
        read of one seq decodes every row group whose seq range holds it (all of them, in
        a file sorted by event time): one person's 26 archived events took 5 s that way.
        Here each file is opened once, and only the row groups holding their times."""
        by_file: dict[int, tuple[list[int], list[int]]] = {}
        times = ts if ts is not None else [0] * len(seqs)
        for seq, t in zip(seqs, times, strict=True):
            if (f := self.file_of(seq)) is not None:
                mine = by_file.setdefault(f.first_seq, ([], []))
                mine[0].append(seq)
                mine[1].append(t)
        out: dict[int, StoredEvent] = {}
        for first, (wanted, wanted_ts) in by_file.items():
            f = self.file_of(first)
            if f is None:
                continue
            table = files.by_seqs(self.path(f), wanted, None if ts is None else wanted_ts)
            out.update((s, StoredEvent(s, t, b)) for s, t, b in zip(
                table["seq"].to_pylist(), table["ts"].to_pylist(), table["body"].to_pylist(),
                strict=True))
        return out

    def get(self, seq: int) -> StoredEvent | None:
        f = self.file_of(seq)
        if f is None:
            return None
        table = files.one_seq(self.path(f), seq)
        if not table.num_rows:
            return None
        return StoredEvent(seq, table["ts"][0].as_py(), table["body"][0].as_py())

    def key_of(self, seq: int) -> tuple[str, str] | None:
        """(source_id, message_id) of an archived event, or None: a dedupe hit's check."""
        f = self.file_of(seq)
        if f is None:
            return None
        table = files.one_seq(self.path(f), seq, ("seq", "source_id", "message_id"))
        if not table.num_rows:
            return None
        return table["source_id"][0].as_py(), table["message_id"][0].as_py()

    def window(self, window: Window, after: WindowCursor | None) -> Iterator[StoredEvent]:
        """The window's archived events in (ts, seq) order after ``after``: each file's
        stream (files skipped by their time bounds and seq ranges), merged."""
        start = (window.ts_from, 0) if after is None else \
            max((window.ts_from, 0), (after.ts, after.seq))
        streams = [files.window_events(self.path(f), start, window.ts_to, window.max_seq,
                                       window.source_ids)
                   for f in self._files
                   if f.ts_max >= start[0] and f.ts_min < window.ts_to
                   and (window.max_seq is None or f.first_seq <= window.max_seq)]
        if len(streams) == 1:
            return streams[0]
        return heapq.merge(*streams, key=lambda e: (e.ts_ms, e.seq))

    def query(self, q: EventQuery) -> list[StoredEvent]:
        """``EventIndex.query`` over the archive: files in ``q``'s seq order, skipped by
        their seq range and time bounds, until ``q.limit`` events are found."""
        out: list[StoredEvent] = []
        for f in (reversed(self._files) if q.descending else self._files):
            if len(out) >= q.limit:
                break
            if (q.after_seq is not None and f.last_seq <= q.after_seq) or \
                    (q.before_seq is not None and f.first_seq >= q.before_seq) or \
                    not f.events or (q.ts_from is not None and f.ts_max < q.ts_from) or \
                    (q.ts_to is not None and f.ts_min >= q.ts_to):
                continue
            table = files.query(self.path(f), msgspec.structs.replace(
                q, limit=q.limit - len(out)))
            out.extend(map(StoredEvent, table["seq"].to_pylist(), table["ts"].to_pylist(),
                           table["body"].to_pylist()))
        return out

    def count(self, window: Window) -> int:
        return sum(files.count(self.path(f), window.ts_from, window.ts_to, window.max_seq,
                               window.source_ids)
                   for f in self._files
                   if f.ts_max >= window.ts_from and f.ts_min < window.ts_to
                   and (window.max_seq is None or f.first_seq <= window.max_seq))

    def span(self) -> tuple[int, int, int, int] | None:
        """(events, bytes, ts_min, ts_max) of the whole archive, or None when empty."""
        held = [f for f in self._files if f.events]
        if not held:
            return None
        return (sum(f.events for f in held), sum(f.bytes for f in self._files),
                min(f.ts_min for f in held), max(f.ts_max for f in held))

