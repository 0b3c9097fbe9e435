"""A deletion (``millpond.regulations``) over the files a ``parquet`` destination wrote:
every file holding rows of the people is written again without them (RudderStack's
approach), in a directory or a bucket.

Why this order, per manifest, and why it survives a SIGKILL anywhere:

1. each of its files that holds the people is written again under a new name
   (:func:`~millpond.storage.archive.files.rewritten_name`, shared with the archive tier's
   own rewrites) with ``replace``: no manifest names that name yet, so overwriting what an
   interrupted attempt left there is safe;
2. the manifest is replaced (one atomic object write: readers see the old set of files or
   the new one, each whole), naming the new files: the swap;
3. the old files are deleted.

A crash before 2 leaves the old files named and their people's rows in them: the resumed
deletion (the job's destination step runs again) finds them again and redoes 1 and 2. A
crash after 2 leaves old files no manifest names: a later pass sees a named file whose
:func:`~millpond.storage.archive.files.previous_name` is still present and deletes it.

A file no manifest names (a load that died before its manifest) that holds their rows is
deleted: never committed, it is only a copy no reader sees.

What a killed write left outside the listing (a local write's ``.tmp-*`` file, fsynced
whole before the kill: :meth:`~.stores.ObjectStore.sweep`) is removed first: no reader
sees it, yet its bytes are the person's rows all the same.

A manifest keeps the seqs of the rows that went (``FileEntry.seqs`` says which seqs the
batch settled, and the writer's exactly-once check reads them): a batch re-sent after
the deletion still adds nothing. A file left without rows stays, empty, for the same
reason. Every object is read whole (S3 has no partial reads in this store); the people's
ids are not sorted in a file, so no statistic lets a file be skipped.
"""

# pyright: basic
# (pyarrow ships no type information: strict mode would flag every call into it)

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute
import pyarrow.parquet as pq

from millpond.storage.archive.files import of_people, previous_name, rewritten_name
from millpond.warehouses.parquet import manifest as mf
from millpond.warehouses.parquet.files import to_parquet
from millpond.warehouses.parquet.stores import ObjectStore

__all__ = ["erase"]

#: pyarrow.compute's functions are made at import time: no checker can see them.
pc: Any = pyarrow.compute


def erase(store: ObjectStore, ids: Sequence[str], *, row_group_size: int,
          compression_level: int | None) -> int:
    """Write again, without the rows whose ``user_id`` or ``anonymous_id`` is one of
    ``ids``, every file that holds any; how many rows went from committed files.
    Idempotent (a second call
    removes nothing and finishes what an interrupted one left)."""
    store.sweep()
    present = set(store.list(""))
    named: set[str] = set()
    removed = 0
    for key, manifest in mf.read_manifests(store):
        entries: list[mf.FileEntry] = []
        old: list[str] = []
        for entry in manifest.files:
            stale = previous_name(entry.key)
            while stale is not None:  # a swap committed, then the process died
                if stale in present:
                    old.append(stale)
                stale = previous_name(stale)
            data = store.get(entry.key)
            if data is None:
                entries.append(entry)
                continue
            table = pq.read_table(pa.BufferReader(data))
            mask = of_people(table, ids)
            gone = _count(mask)
            if not gone:
                entries.append(entry)
                continue
            kept = table.filter(pc.invert(mask))
            written = to_parquet(kept, row_group_size=row_group_size,
                                 compression_level=compression_level)
            new_key = rewritten_name(entry.key)
            store.replace(new_key, written)
            entries.append(mf.FileEntry(new_key, kept.num_rows, entry.seqs, len(written)))
            old.append(entry.key)
            removed += gone
        if entries != manifest.files:
            store.replace(key, mf.encode(msgspec.structs.replace(manifest, files=entries)))
        for name in old:
            store.delete(name)
        named.update(e.key for e in entries)
        named.update(old)
    _orphans(store, present - named, ids)
    return removed


def _orphans(store: ObjectStore, unnamed: set[str], ids: Sequence[str]) -> None:
    """Delete the files no manifest names (a load that died before its manifest, whose
    retry was cut differently) that hold rows of ``ids``: never committed, so no reader
    saw them, and a retry writes them again from the log, which no longer holds the
    people. Under the location lock no load of this process is between its files and
    its manifest, so an unnamed file is never one about to be committed."""
    for key in sorted(unnamed):
        if key.startswith(mf.MANIFEST_DIR + "/") or not key.endswith(".parquet"):
            continue
        data = store.get(key)
        if data is None:
            continue
        try:
            table = pq.read_table(pa.BufferReader(data), columns=["user_id", "anonymous_id"])
        except (pa.ArrowException, OSError):
            continue  # not one of ours
        if _count(of_people(table, ids)):
            store.delete(key)


def _count(mask: pa.ChunkedArray) -> int:
    return int(pc.sum(pc.cast(mask, pa.int64())).as_py() or 0)
