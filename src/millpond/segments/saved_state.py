"""The follower's running state (:mod:`.live`), saved when the server stops and taken up
at its next start instead of a scan of the whole log.

Why: the state is remade at start by one scan of the log, and no segment updates live
until it is done. On a copy of the million-event bench store with 10 segments (1.55
million events by then), a person's membership followed their event 5.9 s after a
restart; the scan grows with the log, so a restart of a server with ten million events
held live segments back for most of a minute.

Why it is exact: the state is a pure function of the log up to a position and of the
conditions it has slots for. A copy taken at a clean stop is taken up only when none of
that can differ: the same followed segments and definitions (:func:`.live.key_of`), the
same slots (each condition and how many times it keeps: :meth:`.scan.LogScan.slot_keys`,
so a version that keeps other data does not read this one's), the follower's checkpoint
at the copy's position, and no event removed (retention, a deletion) since the process
started and before the copy is taken up (:meth:`.engine.SegmentEngine.events_removed`
then forgets it). Anything else, and the follower scans the log as before.

Why the file is removed as it is read, before it is checked: a copy is good for one
start. A server that starts, removes events, then crashes must not find that copy again
at its next start, when its checkpoint may still match.

Why a file of the data dir and not the segment store: it is a cache of derived data for
the one process that follows the embedded store. On a cluster the follower moves
between processes and others remove events meanwhile, so each remakes its state.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from .definition import EventCondition
from .scan import LogScan, slot_key

if TYPE_CHECKING:
    from .live import Key

log = logging.getLogger("millpond.segments")

#: The file's name in the data dir.
FILE = "segment-state.msgpack"
#: Bumped when what a saved state holds changes shape.
FORMAT = 1


class SavedState(msgspec.Struct):
    format: int
    #: A digest of the state's :data:`.live.Key`.
    key: str
    slots: list[bytes]
    upto: int
    events: int
    state: dict[str, list[Any]]


def digest(key: Key) -> str:
    return hashlib.blake2b(msgspec.msgpack.encode(key), digest_size=16).hexdigest()


def save(path: Path, key: Key, scan: LogScan, upto: int) -> int:
    """Write the state of ``scan`` (at log position ``upto``) to ``path``, whole or not at
    all (a temporary file renamed over it); returns the bytes written."""
    state, events = scan.dump()
    data = msgspec.msgpack.encode(SavedState(FORMAT, digest(key), scan.slot_keys(), upto,
                                             events, state))
    part = path.with_name(path.name + ".part")
    part.write_bytes(data)
    os.replace(part, path)
    return len(data)


def take(path: Path) -> SavedState | None:
    """The saved state at ``path``, removing the file (see the module docstring); None if
    there is none or it cannot be read (the follower then scans the log)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("segment state %s could not be read (%s); the log is scanned instead",
                    path, exc)
        data = None
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:  # a copy that stays could be taken up again: never use it
        log.warning("segment state %s could not be removed (%s); the log is scanned"
                    " instead", path, exc)
        return None
    if data is None:
        return None
    try:
        saved = msgspec.msgpack.decode(data, type=SavedState)
    except msgspec.DecodeError as exc:
        log.warning("segment state %s is not one this version reads (%s); the log is"
                    " scanned instead", path, exc)
        return None
    return saved if saved.format == FORMAT else None


def restored(saved: SavedState, key: Key, conditions: Sequence[EventCondition],
             after: int) -> LogScan | None:
    """A scan of ``conditions`` (the follower's now) holding the saved state, if it is
    the state for ``key`` at the follower's position ``after``; None otherwise.

    Each slot is taken from a saved slot that holds the same (:func:`.scan.slot_key`),
    wherever it is: a state joined from a build's scan has the build's conditions last,
    and a second slot for a condition both had (a segment on another with
    ``in_segment``), where a new scan lists each condition once, in definition order."""
    if saved.key != digest(key) or saved.upto != after:
        return None
    where: dict[bytes, int] = {}
    for n, slot in enumerate(saved.slots):
        where.setdefault(slot, n)
    picks = [where.get(slot_key(cond)) for cond in conditions]
    if None in picks:
        return None
    scan = LogScan(conditions)
    state = saved.state
    if picks != list(range(len(saved.slots))):
        chosen = [n + 1 for n in picks if n is not None]
        shared = len(set(chosen)) < len(chosen)  # a slot given twice: copies, not one list
        state = {any_id: [slots[0], *(
            list(slots[n]) if shared and isinstance(slots[n], list) else slots[n]
            for n in chosen)] for any_id, slots in state.items()}
    scan.restore(state, saved.events)
    return scan
