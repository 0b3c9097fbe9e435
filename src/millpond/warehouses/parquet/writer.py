"""The ``parquet`` storage writer: a batch of stored events in, one :data:`LoadOutcome` out.

A batch becomes (see :mod:`.files` for the file layout, :mod:`.manifest` for the commit):

1. the seqs some committed manifest already holds are dropped (a batch re-sent after a crash,
   however it is cut, adds nothing twice);
2. one Parquet file per partition (source, arrival date, arrival hour), each written with
   put-if-absent (:mod:`.stores`);
3. the manifest naming those files, written last with put-if-absent: the commit.

A crash between 2 and 3 leaves orphan files that no manifest names: readers never see them.
The retry writes the same file names (same seqs) and finds them present: a present file holding
exactly the seqs it would write is reused (the log is immutable, so its rows are the same);
one holding other seqs (the retry was cut differently) is left alone and the new file gets the
name ``<first>-<last>.<n>.parquet``, so nothing is ever overwritten.

A deletion (:meth:`ParquetWriter.forget`, :mod:`.erase`) rewrites committed files; it and
the loads of the same location take turns (one lock per location in this process), so it
never runs between a batch's files and its manifest and sees every batch committed before
it started. For the same reason a batch is screened against the regulations under that
lock (:mod:`millpond.warehouses.screening`): a batch the pump let through before a deletion
was accepted, and written after the deletion's rewrite, leaves the person out.

Nothing is retried here: storage errors become ``Retry`` (network, throttling, 5xx, disk
trouble) or ``Reject`` (credentials, bucket, permissions), as for every destination.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from millpond.delivery.screen import Screen
from millpond.warehouses.batch import Loaded, LoadOutcome, Reject, Retry, StoredEvent
from millpond.warehouses.parquet import manifest as mf
from millpond.warehouses.parquet.erase import erase
from millpond.warehouses.parquet.files import partition_batch, to_parquet
from millpond.warehouses.parquet.settings import ParquetSettings, make_store
from millpond.warehouses.parquet.stores import ObjectStore, StoreError
from millpond.warehouses.screening import screened

__all__ = ["ParquetWriter"]

#: At most this many alternative names are tried for one file before giving up (Retry).
_MAX_ALTERNATES = 100

_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_LOCK = threading.Lock()


def _location_lock(store: ObjectStore) -> threading.Lock:
    """The lock loads and deletions of one location take turns under."""
    with _LOCKS_LOCK:
        return _LOCKS.setdefault(store.describe(), threading.Lock())


class ParquetWriter:
    """Writes batches under one location; one writer per location (not thread-safe)."""

    def __init__(self, settings: ParquetSettings, store: ObjectStore | None = None,
                 screen: Screen | None = None) -> None:
        self.settings = settings
        #: Whose events must not be written (regulations), asked under the lock.
        self.screen = screen
        self.store = store if store is not None else make_store(settings)
        self.index = mf.CommittedIndex(self.store)
        self._lock = _location_lock(self.store)

    @property
    def batch_interval_seconds(self) -> float:
        return self.settings.batch_interval_seconds

    def load(self, events: Sequence[StoredEvent]) -> LoadOutcome:
        """Write ``events`` exactly once; never raises for storage trouble, never retries."""
        ordered = sorted(events, key=lambda e: e.seq)
        with self._lock:
            kept, gone = screened(ordered, self.screen)
            if not gone:
                return self._load(ordered)
            if not kept:
                return Loaded(events=len(ordered), rows={}, inserted={}, screened=gone)
            outcome = self._load(list(kept))
            if isinstance(outcome, Loaded):
                return msgspec.structs.replace(outcome, events=len(ordered), screened=gone)
            return outcome

    def forget(self, ids: Sequence[str]) -> int:
        """Remove the rows of ``ids`` (user ids or anonymous ids) from every committed
        file (a regulation's deletion; see :mod:`.erase`); how many. Raises
        :class:`StoreError`: the regulation's step retries."""
        with self._lock:
            return erase(self.store, ids, row_group_size=self.settings.row_group_size,
                         compression_level=self.settings.compression_level)

    def _load(self, ordered: list[StoredEvent]) -> LoadOutcome:
        try:
            done = self.index.committed([e.seq for e in ordered])
            todo = [e for e in ordered if e.seq not in done] if done else ordered
            if not todo:
                return Loaded(events=len(ordered), rows={}, inserted={},
                              already_loaded=len(ordered))
            return self._write(todo, len(ordered))
        except StoreError as exc:
            self.index.reset()
            text = f"{self.store.describe()}: {exc}"
            return Retry(text) if exc.transient else Reject(text)

    def _write(self, todo: list[StoredEvent], total: int) -> LoadOutcome:
        entries: list[mf.FileEntry] = []
        rows: dict[str, int] = {}
        for part in partition_batch(todo):
            seqs = sorted(part.table["seq"].to_pylist())
            data = to_parquet(part.table, row_group_size=self.settings.row_group_size,
                              compression_level=self.settings.compression_level)
            key = self._put_file(f"{part.directory}/{seqs[0]}-{seqs[-1]}", data, seqs)
            entries.append(mf.FileEntry(key, len(seqs), mf.runs(seqs), len(data)))
            rows[part.directory] = len(seqs)
        first, last = todo[0].seq, todo[-1].seq
        manifest = mf.Manifest(1, first, last, len(todo),
                               datetime.now(UTC).isoformat(timespec="milliseconds"), entries)
        key = mf.manifest_key(first, last)
        if not self.store.put_if_absent(key, mf.encode(manifest)):
            # Only another writer could have committed these seqs since we checked: let the
            # next attempt look again rather than guess.
            self.index.reset()
            return Retry(f"{self.store.describe()}: manifest {key} appeared during the write "
                         "(another writer on the same location?); retrying re-checks")
        self.index.add(key, manifest)
        return Loaded(events=total, rows=rows, inserted=dict(rows),
                      files=(*(e.key for e in entries), key), already_loaded=total - len(todo))

    def _put_file(self, stem: str, data: bytes, seqs: list[int]) -> str:
        """Write a data file without overwriting; returns the key used."""
        for n in range(_MAX_ALTERNATES):
            key = f"{stem}.parquet" if n == 0 else f"{stem}.{n}.parquet"
            if self.store.put_if_absent(key, data):
                return key
            if self._holds(key, seqs):
                return key  # an orphan of a crashed attempt with exactly these rows
        raise StoreError(f"{stem}: {_MAX_ALTERNATES} files of that name already exist",
                         transient=True)

    def _holds(self, key: str, seqs: list[int]) -> bool:
        existing = self.store.get(key)
        if existing is None:
            return False
        try:
            table = pq.read_table(pa.BufferReader(existing), columns=["seq"])
        except (pa.ArrowException, OSError):
            return False  # not a readable Parquet file: leave it, use another name
        return sorted(table["seq"].to_pylist()) == seqs


def read_table(store: ObjectStore) -> pa.Table:
    """Every committed event under ``store`` (what a reader of the manifests sees)."""
    tables = []
    for _, manifest in mf.read_manifests(store):
        for entry in manifest.files:
            data = store.get(entry.key)
            if data is None:
                raise StoreError(f"{entry.key} is named by a manifest but missing",
                                 transient=False)
            tables.append(pq.read_table(pa.BufferReader(data)))
    if not tables:
        from millpond.warehouses.parquet.files import SCHEMA

        return SCHEMA.empty_table()
    return pa.concat_tables(tables)
