"""Cutting batches: with a chunk preparer, the same batches, each event handed over once.

The reader process prepares a batch's events a chunk at a time as the batch fills
(``cut_batches(..., chunks=...)``); these tests hold that to the plain cut: the same
boundaries, every event in order, and a ``RecordPreparer`` fed in chunks packing exactly
what it packs for the whole batch.
"""

from __future__ import annotations

import copy
from typing import Any

import msgspec

from millpond.backfill.batching import CHUNK_EVENTS, Batch, ChunkPreparer, End, cut_batches
from millpond.backfill.model import RowError
from millpond.backfill.prepare import RecordPreparer, prepare_records
from millpond.backfill.rows import StreamStats
from millpond.storage.sqlite.dedupe import dedupe_hash

SOURCE = "src_import"


class Collect:
    """A chunk preparer whose prepared batch is the events and JSON it was handed."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.events: list[Any] = []
        self.encoded: list[bytes] = []

    def add(self, events: list[dict[str, Any]], encoded: list[bytes] | None) -> None:
        assert encoded is not None and len(encoded) == len(events)
        self.sizes.append(len(events))
        self.events += events
        self.encoded += encoded

    def finish(self) -> Any:
        prepared = (self.events, self.encoded, self.sizes)
        self.events, self.encoded, self.sizes = [], [], []
        return prepared


def stream(rows: int) -> list[tuple[int, Any]]:
    """Events of uneven size, and now and then a row the converter rejected."""
    out: list[tuple[int, Any]] = []
    for row in range(2, rows + 2):
        if row % 997 == 0:
            out.append((row, RowError(row, row, "id", "missing_id", "id is empty")))
        else:
            out.append((row, {"type": "identify", "userId": f"u{row}", "pad": "x" * (row % 50)}))
    return out


def cut(rows: int, chunks: ChunkPreparer | None, **limits: Any) -> list[Any]:
    limits = {"batch_size": 1200, "max_event_bytes": 1000, "max_batch_bytes": 10**9,
              "start_row": 1, "keep_encoded": True, **limits}
    return list(cut_batches(iter(stream(rows)), StreamStats(), chunks=chunks, **limits))


def first_batch(items: list[Any]) -> Batch:
    return next(item for item in items if type(item) is Batch)


def test_chunks_get_every_event_of_the_same_batches():
    assert isinstance(Collect(), ChunkPreparer)
    for limits in ({}, {"max_batch_bytes": 50_000}, {"batch_size": CHUNK_EVENTS}):
        plain, chunked = cut(3000, None, **limits), cut(3000, Collect(), **limits)
        assert len(plain) == len(chunked)
        for one, other in zip(plain, chunked, strict=True):
            assert type(one) is type(other)
            if type(one) is not Batch:
                assert one == other
                continue
            assert (one.rows, one.through, one.blank) == (other.rows, other.through, other.blank)
            assert other.events is None and other.encoded is None
            events, encoded, sizes = other.prepared
            assert (events, encoded) == (one.events, one.encoded)
            assert all(size == CHUNK_EVENTS for size in sizes[:-1])
            assert 0 < sizes[-1] <= CHUNK_EVENTS
        assert type(chunked[-1]) is End
    # a batch of 1,200 events went over in chunks of 500, 500 and 200
    assert first_batch(cut(3000, Collect())).prepared[2] == [CHUNK_EVENTS, CHUNK_EVENTS, 200]


def test_without_kept_json_the_chunks_get_none():
    class NoJson(Collect):
        def add(self, events: list[dict[str, Any]], encoded: list[bytes] | None) -> None:
            assert encoded is None
            self.sizes.append(len(events))
            self.events += events

    batch = first_batch(cut(1300, NoJson(), keep_encoded=False))
    assert batch.prepared[2] == [CHUNK_EVENTS, CHUNK_EVENTS, 200]


class CountingClock:
    def __init__(self) -> None:
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return 1_714_564_800.125 + self.reads


def test_a_record_preparer_packs_chunks_as_it_packs_the_whole_batch():
    events: list[Any] = []
    for i in range(1100):
        if i % 250 == 7:
            events.append({"type": "identify", "messageId": f"m{i}"})  # no userId: rejected
        elif i % 250 == 9:
            events.append({"type": "track", "userId": "u", "messageId": f"m{i}",
                           "event": "Left", "context": {"import": {"row": i}}})  # slow path
        else:
            events.append({"type": "identify", "messageId": f"m{i}", "userId": f"u{i}",
                           "timestamp": "2024-05-01T12:00:00.000Z", "traits": {"n": i},
                           "context": {"import": {"row": i}}})
    encoded = [msgspec.json.encode(event) for event in events]
    clock = CountingClock()
    preparer = RecordPreparer(SOURCE, clock, dedupe_hash)
    for _ in range(2):  # and again: finish starts the next batch afresh
        for start, end in ((0, 500), (500, 1000), (1000, 1100)):  # (normalize edits events)
            preparer.add(copy.deepcopy(events[start:end]), encoded[start:end])
        packed = preparer.finish()
        reads = clock.reads
        clock.reads -= 1  # the whole batch at once reads the very same time
        assert packed == prepare_records(SOURCE, clock, dedupe_hash, copy.deepcopy(events),
                                         encoded)
        assert clock.reads == reads
    valid, rejected = msgspec.msgpack.decode(packed)
    assert [index for index, _ in rejected] == [7, 257, 507, 757, 1007]
    assert len(valid) == 1095
    clock.reads -= 1
    assert preparer(copy.deepcopy(events), encoded) == packed
