"""A table's rows of a batch held column by column, and the fast way track events get there.

Why columns: every later step works a column at a time (the type a new column gets, the check
that values fit, the tuples handed to ``COPY``), so rows kept as one dict per event were taken
apart again value by value. And events of one name nearly always share their shape (the same
``context`` and ``properties`` keys, sent by the same code), so a column can be cut out of all
of them at once with C-level passes (``map(itemgetter(key), objects)``) instead of flattening
each event key by key in Python: that walk was most of a load's CPU time.

:func:`track_columns` does that for a group of track events of one table, after checking that
the group really has one shape: each object of the tree has exactly the keys of the first
event's, nested objects where it has them and plain values elsewhere, and no key of that shape
would be discarded (reserved, no name, two keys for one column). A group that fails any check
returns None and goes through :func:`~millpond.warehouses.flatten.flatten_batch` like any other
group, so the rows, and every discard with its reason, are exactly what that path would make.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import repeat
from operator import attrgetter, itemgetter
from typing import Any

from millpond.warehouses import schema
from millpond.warehouses.batch import Discard
from millpond.warehouses.flatten import Row, column_name, flatten_batch, nested_names, root_names

__all__ = ["CHUNK", "Columns", "concat", "from_rows", "select_tracks", "track_columns",
           "track_group"]

#: Events cut together: few enough that their objects stay in the CPU cache across the passes
#: over them (a pass over a whole batch's events misses the cache on every value).
CHUNK = 512

_NONE = type(None)
_STRINGS = {str}
_DICTS = {dict}
_seq = attrgetter("seq")
_source = attrgetter("source_id")
_event = attrgetter("event")
_TRACKS_STANDARD = frozenset(schema.standard_columns(schema.TRACKS))
_EVENT_RESERVED = schema.standard_columns(schema.EVENT_TABLE)


@dataclass(slots=True)
class Columns:
    """Rows of one table: row ``i`` is event ``seqs[i]`` (``message_ids[i]``) and holds
    ``values[column][i]`` (None: no value). ``values`` only lists columns some row has a
    value for, as a row dict would only hold the keys it has."""

    seqs: list[int]
    message_ids: list[str]
    values: dict[str, list[Any]]

    def __len__(self) -> int:
        return len(self.seqs)


def from_rows(rows: list[Row]) -> Columns:
    """``rows`` (one table's) as columns."""
    present: dict[str, None] = {}
    for row in rows:
        present.update(dict.fromkeys(row.values))
    dicts = [row.values for row in rows]
    values = {col: list(map(dict.get, dicts, repeat(col))) for col in present}
    return Columns([r.seq for r in rows], [r.message_id for r in rows], values)


def concat(parts: list[Columns]) -> Columns:
    """The rows of ``parts``, one after the other."""
    if len(parts) == 1:
        return parts[0]
    seqs: list[int] = []
    mids: list[str] = []
    names: dict[str, None] = {}
    for part in parts:
        seqs += part.seqs
        mids += part.message_ids
        names.update(dict.fromkeys(part.values))
    values: dict[str, list[Any]] = {col: [] for col in names}
    for part in parts:
        missing = [None] * len(part)
        for col, out in values.items():
            out += part.values.get(col, missing)
    return Columns(seqs, mids, values)


def select_tracks(cols: Columns) -> Columns:
    """The ``tracks`` part of an event table's columns (standard and context columns)."""
    return Columns(cols.seqs, cols.message_ids, {
        c: v for c, v in cols.values.items()
        if c in _TRACKS_STANDARD or c.startswith(schema.CONTEXT_PREFIX)})


def track_group(events: list, table: str) -> tuple[Columns, Columns, list[Discard]]:
    """The event table ``table``'s and ``tracks``' columns for ``events`` (track events of that
    table, in ``seq`` order, each id once, as
    :func:`~millpond.warehouses.flatten.partition_events` groups them) and the discards.

    Chunk by chunk (:data:`CHUNK`): cut by :func:`track_columns` when the chunk has one shape,
    else flattened event by event."""
    parts: list[Columns] = []
    tracks: list[Columns] = []
    discards: list[Discard] = []
    for start in range(0, len(events), CHUNK):
        chunk = events[start:start + CHUNK]
        cols = track_columns(chunk, table)
        if cols is not None:
            parts.append(cols)
            tracks.append(select_tracks(cols))
            continue
        flat = flatten_batch(chunk)
        discards += flat.discards
        parts.append(from_rows([r for r in flat.rows if r.table != schema.TRACKS]))
        tracks.append(from_rows([r for r in flat.rows if r.table == schema.TRACKS]))
    return concat(parts), concat(tracks), discards


def track_columns(events: list, table: str) -> Columns | None:
    """The event table ``table``'s columns for ``events`` (track events of that table, in
    ``seq`` order, each id once, as :func:`~millpond.warehouses.flatten.partition_events`
    groups them), or None when they do not all have one shape (see the module docstring)."""
    dicts = list(map(_event, events))
    n = len(dicts)
    get = dict.get
    mids = list(map(get, dicts, repeat("messageId")))
    names = list(map(get, dicts, repeat("event")))
    if set(map(type, mids)) != _STRINGS or "" in mids or set(map(type, names)) != _STRINGS:
        return None
    values: dict[str, list[Any]] = {
        "id": mids,
        "millpond_seq": list(map(_seq, events)),
        "millpond_source_id": list(map(_source, events)),
    }
    received = list(map(get, dicts, repeat("receivedAt")))
    if not all(received):
        received = [d.get("receivedAt") or d.get("received_at") for d in dicts]
    for col, got in (("received_at", received),
                     ("sent_at", list(map(get, dicts, repeat("sentAt")))),
                     ("timestamp", list(map(get, dicts, repeat("timestamp")))),
                     ("original_timestamp", list(map(get, dicts, repeat("originalTimestamp"))))):
        if got.count(None) != n:
            values[col] = got
    for col, key in (("user_id", "userId"), ("anonymous_id", "anonymousId")):
        got = list(map(get, dicts, repeat(key)))
        if "" in got:
            got = [None if v == "" else v for v in got]
        if got.count(None) != n:
            values[col] = got
    values["event"] = [table] * n
    values["event_text"] = names
    if not _cut(list(map(get, dicts, repeat("context"))), root_names(schema.CONTEXT_PREFIX),
                None, values):
        return None
    if not _cut(list(map(get, dicts, repeat("properties"))), root_names(""), _EVENT_RESERVED,
                values):
        return None
    return Columns(values["millpond_seq"], mids, values)


def _cut(objects: list, names: dict, reserved: dict | None, out: dict[str, list]) -> bool:
    """Add the columns of ``objects`` (one per row: all objects of one shape, or all absent)
    to ``out``; False when they differ in shape or a key of theirs would be discarded."""
    kinds = set(map(type, objects))
    if kinds != _DICTS:
        return kinds <= {_NONE}  # no payload in any row: nothing to add (lists etc.: no)
    sample = objects[0]
    if set(map(len, objects)) != {len(sample)}:
        return False
    for key, first in sample.items():
        col = column_name(names, key)
        if not col:
            return False
        try:
            got = list(map(itemgetter(key), objects))
        except KeyError:
            return False  # same size, other keys
        if type(first) is dict:
            if not first:
                if set(map(type, got)) != _DICTS or set(map(len, got)) != {0}:
                    return False
                continue
            if not _cut(got, nested_names(col), reserved, out):
                return False
            continue
        kinds = set(map(type, got))
        if dict in kinds:
            return False
        if kinds == {_NONE}:
            continue  # null everywhere: no value, the column is not needed
        if reserved is not None and (col in reserved or col.startswith(schema.CONTEXT_PREFIX)):
            return False
        if col in out:
            return False
        out[col] = got
    return True
