"""The events behind each delivery count, as rows of packed seqs: shared by every backend.

Why rows of packed seqs, not one row per event and outcome: a pump finishes tens of
thousands of events a second and checkpoints after every batch. A checkpoint writes one
row per outcome key it released (``(action, outcome, reason)``), holding the seqs of
those events in finishing order, delta-encoded and compressed: a live run's consecutive
seqs cost a few bytes per batch, a replay's (event-time order) a few bytes per event. So
listing "the events skipped for reason X" is an index range of a few rows, newest first,
never a scan of the log, and recording it costs the checkpoint one small insert.

A page cursor is ``"<row id>:<seqs of that row already listed>"``; row ids grow, so
"newest first" is "highest row id first, and within a row, last finished first".
"""

from __future__ import annotations

import heapq
import zlib
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import accumulate
from operator import sub
from typing import TypeVar

from millpond.errors import BadRequest
from millpond.storage.models import OutcomePage

K = TypeVar("K")

#: A stored row: (row id, packed seqs).
Row = tuple[int, bytes]


def pack(seqs: Sequence[int]) -> bytes:
    """``seqs`` (in finishing order) as compressed little-endian int64 deltas.

    The deltas are taken by ``map(sub, ...)``, in C: a checkpoint packs every event a run
    finished (a replay, twice: ``received`` and its outcome), on the thread that shares
    the GIL with the pump, where a generator cost ~20 bytecodes per event."""
    deltas = array("q", seqs[:1])
    deltas.extend(map(sub, seqs[1:], seqs))
    return zlib.compress(deltas.tobytes(), 1)


def pack_all(outcomes: Mapping[K, Sequence[int]] | None) -> list[tuple[K, bytes]]:
    """``(key, packed seqs)`` of every non-empty list of ``outcomes``, each distinct list
    packed once. Why: a checkpoint lists every event it finished under ``received`` and
    under its outcome, and when the caller hands one list for both (every event of the
    batch ended the same way: a replay, mostly), one packing serves both rows."""
    done: dict[int, bytes] = {}
    out: list[tuple[K, bytes]] = []
    for key, seqs in (outcomes or {}).items():
        if seqs:
            blob = done.get(id(seqs))
            if blob is None:
                blob = done[id(seqs)] = pack(seqs)
            out.append((key, blob))
    return out


def unpack(blob: bytes) -> list[int]:
    deltas = array("q")
    deltas.frombytes(zlib.decompress(blob))
    return list(accumulate(deltas))


def parse_cursor(cursor: str | None) -> tuple[int, int] | None:
    """``(row id, skip)`` of a page cursor; BadRequest (field ``cursor``) if malformed."""
    if cursor is None:
        return None
    row, _, skip = cursor.partition(":")
    try:
        parsed = int(row), int(skip or 0)
    except ValueError:
        parsed = (-1, -1)
    if parsed[0] < 0 or parsed[1] < 0:
        raise BadRequest(f"cursor {cursor!r} is not a page cursor of this listing; pass the "
                         "next_cursor of the page before", field="cursor")
    return parsed


def page(streams: Iterable[Iterator[Row]], cursor: tuple[int, int] | None,
         limit: int) -> OutcomePage:
    """Merge row streams (each newest first, already limited to ids ≤ the cursor's row) into
    one page of ``limit`` seqs, newest first."""
    merged = heapq.merge(*streams, key=lambda row: -row[0])
    seqs: list[int] = []
    for row_id, blob in merged:
        listed = list(reversed(unpack(blob)))
        skip = cursor[1] if cursor is not None and row_id == cursor[0] else 0
        room = limit - len(seqs)
        take = listed[skip:skip + room]
        seqs.extend(take)
        if len(seqs) >= limit:
            used = skip + len(take)
            if used < len(listed):
                return OutcomePage(seqs, f"{row_id}:{used}")
            following = next(merged, None)
            return OutcomePage(seqs, None if following is None else f"{following[0]}:0")
    return OutcomePage(seqs, None)


def last_expired(oldest: Iterable[tuple[int, float]], before: float) -> int | None:
    """The id up to which rows may be pruned: ``oldest`` is (id, written at) in id order;
    the cut is at the first row written after ``before``.

    Why by id and not ``WHERE at < before``: ids follow writing order, so the prune is one
    range on the primary key with no index on ``at`` and a bounded, short transaction."""
    last = None
    for row_id, at in oldest:
        if at > before:
            break
        last = row_id
    return last
