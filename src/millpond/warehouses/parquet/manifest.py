"""Manifests: the commit record of each batch, and the index of what is committed.

Why manifests: object stores have no transactions. A batch writes several data files (one per
partition) and a crash can stop it after any of them. The manifest, written *last* and only if
absent, is the commit: a reader that lists ``_manifests/`` and reads the files they name sees
every committed event exactly once, and never a file of a half-written batch (such a file is an
orphan no manifest names).

A manifest names its files and the exact ``seq`` values each holds (as runs ``[first, last]``),
and is itself named ``_manifests/<first_seq>-<last_seq>.json``. Before writing a batch the writer
asks :class:`CommittedIndex` which of the batch's seqs some manifest already holds and skips
them, so a batch re-sent after a crash, even cut differently, adds nothing twice. The index lists
the manifest names once (then keeps itself up to date) and reads a manifest only when its seq
range overlaps the batch: a forward-moving delivery run never reads one.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from millpond.warehouses.parquet.stores import ObjectStore

__all__ = ["MANIFEST_DIR", "CommittedIndex", "FileEntry", "Manifest", "manifest_key", "runs"]

MANIFEST_DIR = "_manifests"
_NAME = re.compile(r"(\d+)-(\d+)\.json")


class FileEntry(msgspec.Struct, frozen=True):
    key: str
    rows: int
    seqs: list[tuple[int, int]]
    bytes: int


class Manifest(msgspec.Struct, frozen=True):
    version: int
    first_seq: int
    last_seq: int
    events: int
    created_at: str
    files: list[FileEntry]

    def seqs(self) -> Iterable[int]:
        for entry in self.files:
            for lo, hi in entry.seqs:
                yield from range(lo, hi + 1)


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Manifest).decode


def encode(manifest: Manifest) -> bytes:
    return _encode(manifest)


def decode(data: bytes) -> Manifest:
    return _decode(data)


def manifest_key(first: int, last: int) -> str:
    return f"{MANIFEST_DIR}/{first}-{last}.json"


def runs(seqs: list[int]) -> list[tuple[int, int]]:
    """Sorted seqs as runs of consecutive values: ``[1, 2, 3, 7]`` -> ``[(1, 3), (7, 7)]``."""
    out: list[tuple[int, int]] = []
    for seq in seqs:
        if out and seq == out[-1][1] + 1:
            out[-1] = (out[-1][0], seq)
        else:
            out.append((seq, seq))
    return out


@dataclass
class CommittedIndex:
    """Which seqs some manifest under ``store`` already holds."""

    store: ObjectStore
    _ranges: list[tuple[int, int, str]] | None = None
    _contents: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    def _load(self) -> list[tuple[int, int, str]]:
        if self._ranges is None:
            ranges = []
            for key in self.store.list(MANIFEST_DIR + "/"):
                m = _NAME.fullmatch(key.rsplit("/", 1)[-1])
                if m:
                    ranges.append((int(m[1]), int(m[2]), key))
            ranges.sort()
            self._ranges = ranges
        return self._ranges

    def reset(self) -> None:
        """Forget what was listed (after an error: the next call lists again)."""
        self._ranges = None
        self._contents.clear()

    def committed(self, seqs: list[int]) -> set[int]:
        """The members of sorted ``seqs`` that committed manifests hold."""
        if not seqs:
            return set()
        lo, hi = seqs[0], seqs[-1]
        ranges = self._load()
        wanted = set(seqs)
        found: set[int] = set()
        # Manifests are sorted by first seq; only those starting at or before hi can overlap.
        for _first, last, key in ranges[: bisect_right(ranges, (hi, float("inf"), ""))]:
            if last < lo:
                continue
            for a, b in self._runs_of(key):
                if b < lo or a > hi:
                    continue
                found.update(s for s in range(max(a, lo), min(b, hi) + 1) if s in wanted)
        return found

    def _runs_of(self, key: str) -> list[tuple[int, int]]:
        cached = self._contents.get(key)
        if cached is None:
            data = self.store.get(key)
            if data is None:  # listed, then gone: someone deleted it by hand
                return []
            manifest = decode(data)
            cached = [r for entry in manifest.files for r in entry.seqs]
            self._contents[key] = cached
        return cached

    def add(self, key: str, manifest: Manifest) -> None:
        """Record a manifest this process just committed."""
        ranges = self._load()
        ranges.append((manifest.first_seq, manifest.last_seq, key))
        ranges.sort()
        self._contents[key] = [r for entry in manifest.files for r in entry.seqs]


def read_manifests(store: ObjectStore) -> list[tuple[str, Manifest]]:
    """Every committed manifest, by first seq."""
    out: list[tuple[int, str, Manifest]] = []
    for key in store.list(MANIFEST_DIR + "/"):
        m = _NAME.fullmatch(key.rsplit("/", 1)[-1])
        data = store.get(key) if m else None
        if data is not None:
            out.append((int(m[1]), key, decode(data)))  # type: ignore[index]
    out.sort(key=lambda t: (t[0], t[1]))
    return [(key, manifest) for _, key, manifest in out]


def describe(manifest: Manifest) -> dict[str, Any]:
    return msgspec.to_builtins(manifest)
