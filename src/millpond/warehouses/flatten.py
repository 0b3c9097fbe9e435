"""Stored events -> warehouse rows, by Segment's schema (:mod:`.schema`) and names (:mod:`.naming`).

Why a pure step of its own: what a row holds must not depend on the database (a loader to
another warehouse, or a dry run, would reuse it), and the rules are easiest to test without one.

Rules, in the order they apply to one event:

1. The event's main table comes from its ``type`` (:func:`.schema.kind_of_type`); a ``track``
   also gets a ``tracks`` row (standard and context columns only). A message that is not one of
   the six Segment calls, or has no ``messageId``, is discarded whole (``column`` None).
2. Standard columns are copied from the Segment fields (``messageId`` -> ``id``,
   ``originalTimestamp`` -> ``original_timestamp``...; ``event`` -> the snake-case slug and
   ``event_text`` -> the name as sent).
3. ``context``, and ``properties`` (track, page, screen) or ``traits`` (identify, group, alias)
   are flattened: nested object keys joined with ``_`` after snake-casing each key, arrays kept
   whole (stored as JSON text), ``null`` and empty objects skipped ("Segment creates and
   populates a column only when it receives a non-null value"). ``_timestamp`` is not a trait
   (the profile rules: it only dates the other traits).
4. A custom column whose name is a standard column of its table or starts with ``context_``,
   a key with no ASCII letter or digit, and a second key that snake-cases to a column already
   set by the same event are discarded, each with its reason (first key in the event wins).
5. The same ``messageId`` twice in one table within a batch (all tracks share ``tracks``): the
   lowest ``seq`` loads, the others are discarded (the log already drops a source's own retries;
   two *sources* may reuse an id). Across batches the merge applies the same rule per table.
6. ``identify`` with a ``userId`` and ``group`` also yield a :class:`TraitUpdate` for ``users`` /
   ``accounts``: the traits with ``null`` kept (a newer ``null`` clears a trait, as in the
   profile store) and the trait time of :func:`millpond.profiles.updates.to_update`
   (``traits._timestamp`` else ``timestamp``), so both places agree on what "newer" means.

Type checks happen later (:mod:`.types`), against the real column types.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from millpond.profiles.updates import to_update
from millpond.warehouses import schema
from millpond.warehouses.batch import Discard, StoredEvent
from millpond.warehouses.naming import event_table_name, fit_identifier, snakecase
from millpond.warehouses.types import show_value

__all__ = ["FlatBatch", "Row", "TraitUpdate", "column_name", "flatten_batch", "nested_names",
           "partition_events", "root_names"]

_RESERVED_TABLES = schema.FIXED_TABLES
_EVENT_RESERVED = schema.standard_columns(schema.EVENT_TABLE)


@dataclass(slots=True)
class Row:
    """One row for ``table`` (logical name, before the destination's prefix)."""

    table: str
    kind: str
    seq: int
    message_id: str
    values: dict[str, Any]


@dataclass(slots=True)
class TraitUpdate:
    """What one identify / group says about ``users`` / ``accounts`` row ``key``."""

    table: str
    key: str
    seq: int
    message_id: str
    time: float
    received_at: Any
    values: dict[str, Any]


@dataclass(slots=True)
class FlatBatch:
    events: int = 0
    rows: list[Row] = field(default_factory=list)
    traits: list[TraitUpdate] = field(default_factory=list)
    discards: list[Discard] = field(default_factory=list)


# prefix -> {key -> column name, or "" when the key has no usable name}. The same few hundred
# keys recur in every event of a batch, and building names is most of flattening's cost. Each
# dict also holds its own prefix under the key None (JSON keys are strings, so no clash).
_names: dict[str, dict] = {}
_LIMIT = 100_000


def _names_for(prefix: str) -> dict:
    names = _names.get(prefix)
    if names is None:
        if len(_names) > _LIMIT:
            _names.clear()  # dicts already handed out stay usable
        names = _names[prefix] = {None: prefix}
    return names


def _children(col: str) -> dict:
    """The names of an object nested under column ``col`` (prefix ``col_``)."""
    return _names_for(col + "_")


def _name(names: dict, key: object) -> str:
    snake = snakecase(key) if isinstance(key, str) else ""
    name = fit_identifier(names[None] + snake) if snake else ""
    if len(names) > _LIMIT:
        prefix = names[None]
        names.clear()
        names[None] = prefix
    names[key] = name
    return name


def root_names(prefix: str) -> dict:
    """The names of the keys of a top-level object flattened under ``prefix`` (shared cache)."""
    return _names_for(prefix)


def nested_names(col: str) -> dict:
    """The names of the keys of an object nested under column ``col`` (shared cache)."""
    return _children(col)


def column_name(names: dict, key: object) -> str:
    """The column of ``key`` in an object named by ``names`` ('' when it has no usable name)."""
    col = names.get(key)
    return _name(names, key) if col is None else col


class _Ctx:
    """Who to blame in a discard: the event and the table its flattened values go to."""

    __slots__ = ("discards", "seq", "message_id", "table")

    def __init__(self, discards: list[Discard], seq: int, message_id: str, table: str) -> None:
        self.discards = discards
        self.seq = seq
        self.message_id = message_id
        self.table = table

    def discard(self, column: str | None, value: Any, reason: str) -> None:
        self.discards.append(
            Discard(self.seq, self.message_id, self.table, column,
                    None if value is None else show_value(value), reason)
        )


def _flatten(obj: dict, names: dict[str, str], out: dict[str, Any], reserved: dict | None,
             keep_nulls: bool, ctx: _Ctx, path: str) -> None:
    """Flatten ``obj`` into ``out``; ``names`` maps its keys to columns (see :func:`_names_for`);
    ``reserved`` (custom columns only) are the table's standard columns."""
    for key, value in obj.items():
        col = names.get(key)
        if col is None:
            col = _name(names, key)
        if type(value) is dict:
            if not value:
                continue
            if col:
                _flatten(value, _children(col), out, reserved, keep_nulls, ctx,
                         f"{path}{key}.")
                continue
        elif value is None and not keep_nulls:
            continue
        if not col:
            ctx.discard(None, value, f"key {path}{key!r} has no letter or digit to make a "
                        "column name")
        elif reserved is not None and (col in reserved
                                       or col.startswith(schema.CONTEXT_PREFIX)):
            ctx.discard(col, value, f"{path}{key} would write the reserved column {col}")
        elif col in out:
            ctx.discard(col, value, f"{path}{key} maps to column {col}, already set by "
                        "another key of the same event")
        else:
            out[col] = value


def _text_id(value: Any) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _standard(event: dict, seq: int, source_id: str, message_id: str) -> dict[str, Any]:
    values: dict[str, Any] = {"id": message_id, "millpond_seq": seq,
                              "millpond_source_id": source_id}
    get = event.get
    value = get("receivedAt") or get("received_at")
    if value is not None:
        values["received_at"] = value
    value = get("sentAt")
    if value is not None:
        values["sent_at"] = value
    value = get("timestamp")
    if value is not None:
        values["timestamp"] = value
    value = get("originalTimestamp")
    if value is not None:
        values["original_timestamp"] = value
    value = get("userId")
    if value is not None and value != "":
        values["user_id"] = value
    value = get("anonymousId")
    if value is not None and value != "":
        values["anonymous_id"] = value
    return values


def flatten_batch(events: Iterable[StoredEvent]) -> FlatBatch:
    """Rows, trait updates and discards for a batch (see the module docstring)."""
    batch = FlatBatch()
    seen: dict[tuple[str, str], StoredEvent] = {}
    ordered = sorted(events, key=lambda e: e.seq)
    batch.events = len(ordered)
    for stored in ordered:
        _flatten_event(stored, batch, seen)
    return batch


_KINDS = {t: schema.kind_of_type(t) for t in ("track", "identify", "page", "screen", "group",
                                                "alias")}
_CONTEXT_NAMES = _names_for(schema.CONTEXT_PREFIX)
_PLAIN_NAMES = _names_for("")
_event_tables: dict[str, str] = {}


def _event_table(name: str) -> str:
    table = _event_tables.get(name)
    if table is None:
        if len(_event_tables) > 100_000:
            _event_tables.clear()
        table = _event_tables[name] = event_table_name(name, _RESERVED_TABLES)
    return table


def partition_events(events: Iterable[StoredEvent]) -> tuple[dict[str, list[StoredEvent]],
                                                              list[Discard]]:
    """Events grouped by the logical table of their main row, in seq order, and the discards.

    Rules 1 and 5 of the module docstring are applied here (events that are not Segment calls
    or lack a messageId; a messageId twice in the batch), so each group can then be flattened
    on its own: a table's rows, and so its column types, only depend on its own group. Tracks
    without an event name form the group ``tracks``.
    """
    groups: dict[str, list[StoredEvent]] = {}
    discards: list[Discard] = []
    seen: dict[tuple[str, str], StoredEvent] = {}
    for stored in sorted(events, key=lambda e: e.seq):
        get = stored.event.get
        kind = _KINDS.get(get("type"))  # type: ignore[arg-type]
        message_id = get("messageId")
        if type(message_id) is not str or not message_id:
            message_id = _text_id(message_id)
        if kind is None or message_id is None:
            _discard_whole(stored, kind, message_id, discards)
            continue
        main = schema.TRACKS if kind == schema.EVENT_TABLE else kind
        first = seen.get((main, message_id))
        if first is not None:
            _discard_duplicate(stored, kind, message_id, first, discards)
            continue
        seen[(main, message_id)] = stored
        if kind == schema.EVENT_TABLE:
            name = get("event")
            key = _event_table(name) if isinstance(name, str) and name else schema.TRACKS
        else:
            key = kind
        group = groups.get(key)
        if group is None:
            group = groups[key] = []
        group.append(stored)
    return groups, discards


def _discard_whole(stored: StoredEvent, kind: str | None, message_id: str | None,
                   discards: list[Discard]) -> None:
    main = schema.TRACKS if kind == schema.EVENT_TABLE else kind
    what = "not a Segment call (type must be track, identify, page, screen, group or alias)"
    discards.append(Discard(stored.seq, message_id or "", main or "", None,
                            show_value(stored.event.get("type")),
                            what if kind is None else "no messageId"))


def _discard_duplicate(stored: StoredEvent, kind: str, message_id: str, first: StoredEvent,
                       discards: list[Discard]) -> None:
    main = schema.TRACKS if kind == schema.EVENT_TABLE else kind
    discards.append(Discard(
        stored.seq, message_id, main, None, None,
        f"messageId {message_id!r} is loaded from seq {first.seq} (source "
        f"{first.source_id}) in the same batch; an id is loaded once per table"))


def _flatten_event(stored: StoredEvent, batch: FlatBatch,
                   seen: dict[tuple[str, str], StoredEvent]) -> None:
    event = stored.event
    get = event.get
    seq = stored.seq
    kind = _KINDS.get(get("type"))  # type: ignore[arg-type]
    message_id = get("messageId")
    if type(message_id) is not str or not message_id:
        message_id = _text_id(message_id)
    if kind is None or message_id is None:
        _discard_whole(stored, kind, message_id, batch.discards)
        return
    main = kind if kind != schema.EVENT_TABLE else schema.TRACKS
    first = seen.get((main, message_id))
    if first is not None:
        _discard_duplicate(stored, kind, message_id, first, batch.discards)
        return
    seen[(main, message_id)] = stored
    discards = batch.discards
    base = _standard(event, seq, stored.source_id, message_id)
    context = get("context")
    if type(context) is dict and context:
        _flatten(context, _CONTEXT_NAMES, base, None, False,
                 _Ctx(discards, seq, message_id, main), "context.")

    if kind == schema.EVENT_TABLE:
        name = event.get("event")
        if not isinstance(name, str) or not name:
            batch.discards.append(Discard(seq, message_id, schema.TRACKS, "event",
                                          show_value(name), "track without an event name: "
                                          "loaded in tracks only, its properties are not stored"))
            batch.rows.append(Row(schema.TRACKS, schema.TRACKS, seq, message_id, base))
            return
        table = _event_table(name)
        base["event"] = table
        base["event_text"] = name
        batch.rows.append(Row(schema.TRACKS, schema.TRACKS, seq, message_id, base))
        values = dict(base)
        props = event.get("properties")
        if type(props) is dict and props:
            _flatten(props, _PLAIN_NAMES, values, _EVENT_RESERVED, False,
                     _Ctx(discards, seq, message_id, table), "properties.")
        batch.rows.append(Row(table, kind, seq, message_id, values))
        return

    reserved = schema.reserved_columns(kind)
    if kind in (schema.PAGES, schema.SCREENS):
        for key in ("name", "category"):
            value = event.get(key)
            if value is not None:
                base[key] = value
        payload = event.get("properties")
    else:
        payload = event.get("traits")
        if kind == schema.GROUPS:
            group_id = _text_id(event.get("groupId"))
            if group_id is not None:
                base["group_id"] = group_id
        elif kind == schema.ALIASES:
            previous = _text_id(event.get("previousId"))
            if previous is not None:
                base["previous_id"] = previous
    ctx = _Ctx(discards, seq, message_id, main)
    trait_values: dict[str, Any] | None = None
    if type(payload) is dict and payload:
        if kind in (schema.IDENTIFIES, schema.GROUPS):
            # Flatten once with nulls (users/accounts need them), then drop them for the row.
            trait_values = {}
            traits = {k: v for k, v in payload.items() if k != "_timestamp"}
            _flatten(traits, _PLAIN_NAMES, trait_values, reserved, True, ctx, "traits.")
            for col, value in trait_values.items():
                if value is not None:
                    base[col] = value
        else:
            _flatten(payload, _PLAIN_NAMES, base, reserved, False, ctx,
                     "properties." if kind in (schema.PAGES, schema.SCREENS) else "traits.")
    batch.rows.append(Row(main, kind, seq, message_id, base))

    if kind in (schema.IDENTIFIES, schema.GROUPS):
        update = to_update(event)
        key = None
        if update is not None:
            key = update.user_id if kind == schema.IDENTIFIES else update.group_id
        if update is None or key is None:
            return  # anonymous identify: Segment's users table is keyed by user_id
        # Reserved trait names were discarded above (identifies/groups reserve a superset of
        # the users/accounts columns), so every trait column here is a real trait.
        profile_values = trait_values or {}
        batch.traits.append(TraitUpdate(
            schema.USERS if kind == schema.IDENTIFIES else schema.ACCOUNTS, key, seq,
            message_id, update.time, base.get("received_at"), profile_values))
