"""From flattened rows and the catalog to typed rows ready for ``COPY``: no I/O here.

Why a planning step apart from the SQL: every decision that depends on values (which columns a
table needs, the type a new column gets, which values fit, what is discarded and why) is made
here, in plain Python, against a :class:`~.catalog.Catalog` snapshot. The SQL steps
(:mod:`.run`, :mod:`.merge`) then only move rows, so a ``COPY`` never fails on a value halfway
through a batch: anything that would not fit was already turned into a discard.

Per table, because DDL sits between the steps:

1. :func:`table_spec` / :func:`trait_spec` - the columns and types a table needs (for DDL and
   the registry);
2. :func:`check_tables` - after DDL, whether hand-made changes block the load (terminal);
3. :func:`table_load` / :func:`trait_load` - coerced rows, winners per trait, discards.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import msgspec

from millpond.warehouses import schema
from millpond.warehouses.batch import Discard
from millpond.warehouses.columns import Columns, from_rows
from millpond.warehouses.flatten import FlatBatch, TraitUpdate
from millpond.warehouses.naming import fit_identifier
from millpond.warehouses.postgres.catalog import ACCEPTS, MAX_COLUMNS, Catalog, TableSpec
from millpond.warehouses.postgres.errors import TableProblem
from millpond.warehouses.types import (
    COERCERS,
    ColumnType,
    Misfit,
    coerce_column,
    infer,
    infer_column,
    show_value,
    widen,
)

__all__ = [
    "Layout",
    "TableLoad",
    "TraitLoad",
    "check_tables",
    "derivable",
    "layout",
    "project",
    "specs_for",
    "table_load",
    "table_spec",
    "trait_load",
    "trait_spec",
]

#: Filled by SQL (``now()``), never staged.
_SQL_ONLY = frozenset({"uuid_ts"})


@dataclass(slots=True)
class TableLoad:
    """Rows for one event table, values in ``columns`` order, coerced to ``types``."""

    name: str
    columns: list[str]
    types: list[ColumnType]
    rows: list[tuple[Any, ...]]


@dataclass(slots=True)
class TraitLoad:
    """One ``users`` / ``accounts`` merge: the batch's winner per (key, trait column)."""

    name: str
    columns: list[str]
    """Trait columns that exist (a trait only ever null needs no column)."""
    types: list[ColumnType]
    rows: list[list[Any]]
    """``[key, received_at, *values]``; a value is the winner's, or None."""
    times: list[str]
    """Per row, the times of its winners as a JSON object ``{column: [time, messageId,
    seq]}`` (:func:`times_json`), columns without a table column too."""


@dataclass(slots=True)
class Layout:
    """Physical table names and the rows / trait updates of each."""

    prefix: str
    rows: dict[str, Columns] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    traits: dict[str, list[TraitUpdate]] = field(default_factory=dict)

    def physical(self, logical: str) -> str:
        return fit_identifier(self.prefix + logical) if logical else logical


def layout(flat: FlatBatch, prefix: str) -> Layout:
    """Group the batch's rows by physical table."""
    out = Layout(prefix)
    rows: dict[str, list] = {}
    for row in flat.rows:
        name = out.physical(row.table)
        rows.setdefault(name, []).append(row)
        out.kinds[name] = row.kind
    out.rows = {name: from_rows(table_rows) for name, table_rows in rows.items()}
    for update in flat.traits:
        out.traits.setdefault(out.physical(update.table), []).append(update)
    return out


def _trait_types(updates: list[TraitUpdate], unknown: set[str]) -> dict[str, ColumnType]:
    types: dict[str, ColumnType] = {}
    for update in updates:
        values = update.values
        for col in unknown.intersection(values):
            value = values[col]
            if value is None:
                continue
            seen = infer(value)
            prev = types.get(col)
            types[col] = seen if prev is None else widen(prev, seen)
    return types


def _column_types(cols: Columns, unknown: set[str]) -> dict[str, ColumnType]:
    types = {}
    for col in unknown:
        ctype = infer_column(cols.values[col])
        if ctype is not None:
            types[col] = ctype
    return types


def table_spec(name: str, kind: str, cols: Columns, catalog: Catalog) -> TableSpec:
    """The columns (with types) one event table needs for ``cols``."""
    return _spec(name, schema.standard_columns(kind), set(cols.values),
                 lambda unknown: _column_types(cols, unknown), catalog)


def trait_spec(name: str, updates: list[TraitUpdate], catalog: Catalog) -> TableSpec:
    """The columns (with types) ``users`` / ``accounts`` need for ``updates``."""
    present: set[str] = set()
    for update in updates:
        present.update(update.values)
    return _spec(name, schema.PROFILE_COLUMNS, present,
                 lambda unknown: _trait_types(updates, unknown), catalog)


def _spec(name: str, standard: dict[str, ColumnType], present: set[str],
          infer_types: Any, catalog: Catalog) -> TableSpec:
    columns: dict[str, ColumnType] = {}
    for col, ctype in standard.items():
        columns[col] = catalog.type_of(name, col) or ctype
    unknown = set()
    for col in sorted(present - standard.keys()):
        known = catalog.type_of(name, col)
        if known is None:
            unknown.add(col)
        else:
            columns[col] = known
    if unknown:
        inferred = infer_types(unknown)
        existing = len(catalog.tables.get(name, {})) or len(columns)
        room = MAX_COLUMNS - max(existing, len(columns))
        dropped = set()
        for col in sorted(inferred):
            if room <= 0:
                dropped.add(col)
                continue
            columns[col] = inferred[col]
            room -= 1
        return TableSpec(name, "id", columns, frozenset(dropped))
    return TableSpec(name, "id", columns)


def specs_for(lay: Layout, catalog: Catalog) -> list[TableSpec]:
    """The columns (with types) each table of the batch needs."""
    specs = []
    for name, rows in lay.rows.items():
        specs.append(table_spec(name, lay.kinds[name], rows, catalog))
    for name, updates in lay.traits.items():
        specs.append(trait_spec(name, updates, catalog))
    return specs


def check_tables(catalog: Catalog, specs: list[TableSpec], lay: Layout, schema_name: str) -> None:
    """Raise :class:`TableProblem` when a hand-made change keeps this batch from loading."""
    for spec in specs:
        cols = catalog.tables.get(spec.name, {})
        rows: Columns | list[TraitUpdate] = lay.traits.get(spec.name) or []
        if spec.name in lay.rows:
            rows = lay.rows[spec.name]
        for name in spec.columns:
            col = cols.get(name)
            if col is None or col.actual is None:
                raise TableProblem(f"table {schema_name}.{spec.name} column {name}: missing "
                                   "after millpond created it (dropped during the load?)")
            wanted = catalog.type_of(spec.name, name) or spec.columns[name]
            if col.actual not in ACCEPTS[wanted]:
                raise TableProblem(
                    f"table {schema_name}.{spec.name} column {name}: its type is {col.actual}, "
                    f"changed by hand, but millpond loads {wanted.value} values there; change "
                    f"it back (ALTER TABLE {schema_name}.{spec.name} ALTER COLUMN {name} TYPE "
                    f"{wanted.value}) or widen it to text, then redrive the batch")
        for name, col in cols.items():
            if not col.not_null or name in ("id", "uuid_ts") or col.actual is None:
                continue
            if col.has_default and name not in spec.columns:
                continue  # not in millpond's column list: its DEFAULT fills it
            empty = _rows_without(spec.name, name, rows, lay)
            if empty:
                raise TableProblem(
                    f"table {schema_name}.{spec.name} column {name}: NOT NULL was added by "
                    f"hand, but {empty} row(s) of this batch have no value for it; drop the "
                    f"constraint (ALTER TABLE {schema_name}.{spec.name} ALTER COLUMN {name} "
                    "DROP NOT NULL) or give it a DEFAULT, then redrive the batch")


def _rows_without(table: str, column: str, rows: Any, lay: Layout) -> int:
    """How many rows of the batch leave ``column`` empty (a trait cell may stay as it is,
    but a new users/accounts row starts with only id and received_at)."""
    if table in lay.traits:
        if column == "received_at":
            return sum(1 for u in rows if u.received_at is None)
        return len({u.key for u in rows})
    values = rows.values.get(column)
    return len(rows) if values is None else values.count(None)


def derivable(wanted: TableSpec, count: int, events: dict[str, tuple[TableSpec, int]]) -> bool:
    """Whether ``tracks`` (spec ``wanted``, ``count`` rows) can be selected from the stages of
    the event tables ``events`` (name -> (spec, rows)).

    Every ``tracks`` row is the standard and context part of one event-table row, so when all
    of them have one, and each shared column has the same type in both tables, ``tracks``
    rows are cut from the event tables' typed rows (:func:`project`): no value coerced twice.
    """
    if wanted.dropped or sum(n for _, n in events.values()) != count:
        return False
    for spec, _ in events.values():
        if spec.dropped:
            return False
        for col, ctype in wanted.columns.items():
            if spec.columns.get(col, ctype) is not ctype:
                return False
    return True


def project(load: TableLoad, columns: list[str]) -> list[tuple[Any, ...]]:
    """``load``'s rows cut down to ``columns`` (None where it has no such column): the
    ``tracks`` rows of an event table, from values already coerced."""
    if not load.rows:
        return []
    by_name = dict(zip(load.columns, zip(*load.rows, strict=True), strict=True))
    none = (None,) * len(load.rows)
    return list(zip(*(by_name.get(c, none) for c in columns), strict=True))


def _misfit_discard(table: str, seq: int, message_id: str, col: str, value: Any,
                    exc: Exception) -> Discard:
    return Discard(seq, message_id, table, col, show_value(value), f"{exc}, column {col}")


def table_load(spec: TableSpec, rows: Columns, discards: list[Discard],
               also: str | None = None, shared: frozenset[str] | None = None,
               shared_discards: list[Discard] | None = None) -> TableLoad:
    """Rows of one table coerced to its spec; misfits become ``discards``.

    ``also`` / ``shared``: a misfit in one of the ``shared`` columns is reported for table
    ``also`` as well (``tracks``, when it is selected from this table's stage), into
    ``shared_discards`` (default: ``discards``). ``shared`` None means the ``tracks``
    columns: standard ones and ``context_*``.
    """
    return _table_load(spec, rows, discards, also, shared, shared_discards)


def trait_load(spec: TableSpec, updates: list[TraitUpdate], discards: list[Discard]) -> TraitLoad:
    """The batch's winner per (key, trait column) of ``users`` / ``accounts``."""
    return _trait_load(spec, updates, discards)


_TRACKS_STANDARD = frozenset(schema.standard_columns(schema.TRACKS))


def _shared(col: str, shared: frozenset[str] | None) -> bool:
    if shared is None:
        return col in _TRACKS_STANDARD or col.startswith(schema.CONTEXT_PREFIX)
    return col in shared


def _table_load(spec: TableSpec, rows: Columns, discards: list[Discard],
                also: str | None = None, shared: frozenset[str] | None = frozenset(),
                shared_discards: list[Discard] | None = None) -> TableLoad:
    """Coerce column by column (see :func:`~millpond.warehouses.types.coerce_column`).

    ``also``: a table derived from this one (``tracks``); a misfit in one of its ``shared``
    columns is missing there too, and is reported for it as well.
    """
    columns = [c for c in spec.columns if c not in _SQL_ONLY]
    types = [spec.columns[c] for c in columns]
    name = spec.name
    seqs, mids, values = rows.seqs, rows.message_ids, rows.values
    missing = [None] * len(rows)
    typed_columns = []
    for col, ctype in zip(columns, types, strict=True):
        typed, misfits = coerce_column(values.get(col, missing), ctype)
        for i, value, reason in misfits:
            discards.append(Discard(seqs[i], mids[i], name, col, show_value(value),
                                    f"{reason}, column {col}"))
            if also is not None and _shared(col, shared):
                (discards if shared_discards is None else shared_discards).append(Discard(
                    seqs[i], mids[i], also, col, show_value(value),
                    f"{reason}, column {col}"))
        typed_columns.append(typed)
    for col in sorted(spec.dropped):
        for i, value in enumerate(values.get(col, ())):
            if value is not None:
                discards.append(Discard(seqs[i], mids[i], name, col, show_value(value),
                                        f"table {name} has reached {MAX_COLUMNS} columns"))
    return TableLoad(name, columns, types, list(zip(*typed_columns, strict=True)))


def _trait_load(spec: TableSpec, updates: list[TraitUpdate],
                discards: list[Discard]) -> TraitLoad:
    """Reduce the batch to one winner per (key, column): greatest (time, messageId, seq)."""
    name = spec.name
    columns = [c for c in spec.columns if c not in schema.PROFILE_COLUMNS]
    coercers = {c: COERCERS[spec.columns[c]] for c in columns}
    winners: dict[tuple[str, str], tuple[float, str, int, Any]] = {}
    received: dict[str, Any] = {}
    received_coerce = COERCERS[spec.columns["received_at"]]
    for u in updates:
        at = None
        if u.received_at is not None:
            with suppress(Misfit):  # already reported for the event's own table
                at = received_coerce(u.received_at)
        prev = received.get(u.key)
        if u.key not in received or (at is not None and (prev is None or at > prev)):
            received[u.key] = at
        for col, value in u.values.items():
            coerce = coercers.get(col)
            if value is not None:
                if coerce is None:
                    discards.append(Discard(u.seq, u.message_id, name, col, show_value(value),
                                            f"table {name} has reached {MAX_COLUMNS} columns"))
                    continue
                try:
                    value = coerce(value)
                except Misfit as exc:
                    discards.append(_misfit_discard(name, u.seq, u.message_id, col, value, exc))
                    continue
            rank = (u.time, u.message_id, u.seq, value)
            best = winners.get((u.key, col))
            if best is None or rank[:3] > best[:3]:
                winners[(u.key, col)] = rank
    index = {c: i for i, c in enumerate(columns)}
    rows: dict[str, list[Any]] = {key: [key, at] + [None] * len(columns)
                                  for key, at in received.items()}
    times: dict[str, dict[str, tuple[float, str, int]]] = {key: {} for key in received}
    for (key, col), (t, mid, seq, value) in winners.items():
        times[key][col] = (t, mid, seq)
        i = index.get(col)
        if i is not None:
            rows[key][2 + i] = value
    return TraitLoad(name, columns, [spec.columns[c] for c in columns], list(rows.values()),
                     list(map(times_json, times.values())))


_encode = msgspec.json.Encoder().encode


def times_json(times: dict[str, tuple[float, str, int]]) -> str:
    """A row's trait times as the JSON its ``millpond_trait_times`` column holds.

    Why JSON numbers are safe for the times: msgspec writes a float in its shortest form that
    reads back as the same double, and PostgreSQL keeps a JSON number as the exact decimal, so
    ``(... ->> 0)::float8`` in the merge gets the very double computed here (times are finite:
    :func:`millpond.profiles.timestamps.parse_trait_timestamp`)."""
    return _encode(times).decode()
