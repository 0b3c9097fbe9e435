"""A table's rows of a batch held column by column, and the fast way events get there.

Why columns: every later step works a column at a time (the type a new column gets, the check
that values fit, the tuples handed to ``COPY``), so rows kept as one dict per event were taken
apart again value by value. And the events of one table nearly always share their shape (the
same ``context`` and ``properties`` / ``traits`` keys, sent by the same code), so a column can
be cut out of all of them at once with C-level passes (``map(itemgetter(key), objects)``)
instead of flattening each event key by key in Python: that walk was most of a load's CPU time.

:func:`cut_columns` does that for a chunk of one group's events, after checking that the chunk
really has one shape: each object of the tree has exactly the keys of the first event's, nested
objects where it has them and plain values elsewhere, ids are non-empty strings, and no key of
that shape would be discarded (reserved, no name, two keys for one column). A chunk that fails
any check returns None and goes through :func:`~millpond.warehouses.flatten.flatten_batch`, so
the rows, the ``users`` / ``accounts`` updates and every discard with its reason are exactly
what that path makes (``tests/warehouses/test_columns.py`` compares both on random shapes).
Chunks (:data:`CHUNK`) keep an odd event from sending a whole group down the slow path.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import repeat
from operator import attrgetter, itemgetter
from typing import Any

from millpond.profiles.updates import to_update
from millpond.warehouses import schema
from millpond.warehouses.batch import Discard
from millpond.warehouses.flatten import (
    Row,
    TraitUpdate,
    column_name,
    flatten_batch,
    nested_names,
    root_names,
)

__all__ = ["CHUNK", "Columns", "concat", "cut_columns", "from_rows", "group_columns",
           "select_tracks"]

#: Events cut together: an event of another shape only sends its own chunk down the event by
#: event path.
CHUNK = 512

_NONE = type(None)
_STRINGS = {str}
_DICTS = {dict}
_seq = attrgetter("seq")
_source = attrgetter("source_id")
_event = attrgetter("event")
_TRACKS_STANDARD = frozenset(schema.standard_columns(schema.TRACKS))


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


def group_columns(events: list, logical: str) -> tuple[dict[str, Columns], list[TraitUpdate],
                                                        list[Discard]]:
    """The columns of each (logical) table ``events`` have rows in, their ``users`` /
    ``accounts`` updates and the discards. ``events`` are one group of
    :func:`~millpond.warehouses.flatten.partition_events` (``logical`` is its key: one kind or
    one event table; ``seq`` order, each id once).

    Chunk by chunk (:data:`CHUNK`): cut by :func:`cut_columns` when the chunk has one shape,
    else flattened event by event; the result is the same."""
    parts: dict[str, list[Columns]] = {}
    traits: list[TraitUpdate] = []
    discards: list[Discard] = []
    for start in range(0, len(events), CHUNK):
        chunk = events[start:start + CHUNK]
        cut = None if logical == schema.TRACKS else cut_columns(chunk, logical)
        if cut is not None:
            cols, updates = cut
            traits += updates
            parts.setdefault(logical, []).append(cols)
            if logical not in schema.FIXED_TABLES:
                parts.setdefault(schema.TRACKS, []).append(select_tracks(cols))
            continue
        flat = flatten_batch(chunk)
        discards += flat.discards
        traits += flat.traits
        rows: dict[str, list[Row]] = {}
        for row in flat.rows:
            rows.setdefault(row.table, []).append(row)
        for table, table_rows in rows.items():
            parts.setdefault(table, []).append(from_rows(table_rows))
    return {table: concat(cols) for table, cols in parts.items()}, traits, discards


def cut_columns(events: list, logical: str) -> tuple[Columns, list[TraitUpdate]] | None:
    """The main table's columns for ``events`` (see :func:`group_columns`) and their
    ``users`` / ``accounts`` updates, or None when they do not all have one shape (see the
    module docstring)."""
    kind = logical if logical in schema.FIXED_TABLES else schema.EVENT_TABLE
    dicts = list(map(_event, events))
    n = len(dicts)
    get = dict.get
    mids: list[Any] = list(map(get, dicts, repeat("messageId")))
    if set(map(type, mids)) != _STRINGS or "" in mids:
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
    if kind == schema.EVENT_TABLE:
        names = list(map(get, dicts, repeat("event")))
        if set(map(type, names)) != _STRINGS:
            return None
        values["event"] = [logical] * n
        values["event_text"] = names
    elif kind in (schema.PAGES, schema.SCREENS):
        for key in ("name", "category"):
            got = list(map(get, dicts, repeat(key)))
            if got.count(None) != n:
                values[key] = got
    elif kind in _IDS:
        col, key = _IDS[kind]
        got = list(map(get, dicts, repeat(key)))
        kinds = set(map(type, got))
        if kinds == _STRINGS and "" not in got:
            values[col] = got
        elif kinds != {_NONE}:
            return None  # numbers, empty strings: flattened one by one
    if not _cut(list(map(get, dicts, repeat("context"))), root_names(schema.CONTEXT_PREFIX),
                _Place(None, False), values, None):
        return None
    with_traits = kind in (schema.IDENTIFIES, schema.GROUPS)
    payload = "properties" if kind in _WITH_PROPERTIES else "traits"
    reserved = schema.reserved_columns(kind)
    trait_values: dict[str, list[Any]] | None = {} if with_traits else None
    if not _cut(list(map(get, dicts, repeat(payload))), root_names(""),
                _Place(reserved, with_traits, "_timestamp" if with_traits else None),
                values, trait_values):
        return None
    cols = Columns(values["millpond_seq"], mids, values)
    if trait_values is None:
        return cols, []
    return cols, _trait_updates(events, dicts, kind, values.get("received_at"), trait_values)


_IDS = {schema.GROUPS: ("group_id", "groupId"), schema.ALIASES: ("previous_id", "previousId")}
_WITH_PROPERTIES = frozenset({schema.EVENT_TABLE, schema.PAGES, schema.SCREENS})


def _trait_updates(events: list, dicts: list[dict], kind: str, received: list | None,
                   trait_values: dict[str, list[Any]]) -> list[TraitUpdate]:
    """What each identify / group says about ``users`` / ``accounts`` (rule 6 of
    :mod:`~millpond.warehouses.flatten`): its traits, nulls included."""
    table = schema.USERS if kind == schema.IDENTIFIES else schema.ACCOUNTS
    names = list(trait_values)
    rows = zip(*trait_values.values(), strict=True) if names else repeat(())
    updates = []
    for i, (stored, event, traits) in enumerate(zip(events, dicts, rows, strict=False)):
        update = to_update(event)
        if update is None:
            continue
        key = update.user_id if kind == schema.IDENTIFIES else update.group_id
        if key is None:
            continue
        updates.append(TraitUpdate(table, key, stored.seq, event["messageId"], update.time,
                                   None if received is None else received[i],
                                   dict(zip(names, traits, strict=True))))
    return updates


class _Place:
    """How keys are treated at one place of the tree: the columns they may not write, whether
    nulls are kept (traits for users / accounts), a key that is no column (``_timestamp``)."""

    __slots__ = ("reserved", "keep_nulls", "skip")

    def __init__(self, reserved: dict | None, keep_nulls: bool, skip: str | None = None) -> None:
        self.reserved = reserved
        self.keep_nulls = keep_nulls
        self.skip = skip


def _cut(objects: list, names: dict, place: _Place, out: dict[str, list],
         kept: dict[str, list] | None) -> bool:
    """Add the columns of ``objects`` (one per row: all objects of one shape, or all absent)
    to ``out`` (and every column, nulls too, to ``kept`` when not None); False when they
    differ in shape or a key of theirs would be discarded."""
    kinds = set(map(type, objects))
    if kinds != _DICTS:
        return kinds <= {_NONE}  # no payload in any row: nothing to add (lists etc.: no)
    sample = objects[0]
    if set(map(len, objects)) != {len(sample)}:
        return False
    reserved = place.reserved
    for key, first in sample.items():
        if key == place.skip:
            continue
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
            if not _cut(got, nested_names(col), _Place(reserved, place.keep_nulls), out, kept):
                return False
            continue
        kinds = set(map(type, got))
        if dict in kinds:
            return False
        if kinds == {_NONE} and not place.keep_nulls:
            continue  # null everywhere: no value, the column is not needed
        if reserved is not None and (col in reserved or col.startswith(schema.CONTEXT_PREFIX)):
            return False
        if col in out or (kept is not None and col in kept):
            return False
        if kept is not None:
            kept[col] = got
        if kinds != {_NONE}:
            out[col] = got
    return True
