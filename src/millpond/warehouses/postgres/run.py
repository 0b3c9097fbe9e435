"""One batch, one transaction, table by table: Python's work overlaps the server's.

Why table by table: a load spends about as long in Python (flattening, type checks, building
rows) as PostgreSQL spends merging. Done one after the other those add up; done table by table
they overlap: while the server runs table *k*'s ``INSERT ... SELECT`` (sent in psycopg's pipeline
mode, which returns at once), Python flattens and builds table *k+1*. Nothing about the result
changes, because a table's rows and column types only depend on its own events (the groups of
:func:`millpond.warehouses.flatten.partition_events`).

Why rows are copied straight into their tables: a ``COPY`` into the real table costs the server
what a raw ``COPY`` costs, while staging in a temporary table and merging with
``INSERT ... SELECT ... ON CONFLICT`` costs it about twice as much (the bench showed the merge as
the largest part of a load). The merge is only needed when an ``id`` is already there: a batch
run again after a crash, or a messageId another source reused. So each table's ``COPY`` runs in
a savepoint; a unique violation rolls back just that table's rows, and from then on the batch
takes the merge path (:meth:`BatchRun._merge`), which inserts what is missing and reports
collisions. The outcome is the same either way; only the cost differs. A column whose real type
differs from millpond's (widened by hand to ``numeric`` or ``text``) cannot take binary values of
millpond's type, so such a table is always merged (the ``INSERT ... SELECT`` casts).

The steps, all in one transaction (so a failure anywhere leaves nothing of the batch):

1. read the catalog and the column registry (:mod:`.catalog`), create the bookkeeping tables if
   missing;
2. per table (event tables, identifies, pages, screens, groups, aliases): flatten its events,
   work out its columns (:func:`.plan.table_spec`), build its rows; then wait for the previous
   table's merge, create or alter the table if needed (transactional DDL: a new column is only
   visible once the batch commits), reject the batch if the table was changed by hand so it
   cannot load (:func:`.plan.check_tables`), ``COPY`` the rows into the table (or merge them);
3. ``tracks``: the standard and context columns of each event table's typed rows, copied the
   same way (no second coercion of the same values);
4. ``users`` / ``accounts`` by trait time (:mod:`.traits`), then the discards.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import datetime
from itertools import repeat
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from millpond.warehouses import schema
from millpond.warehouses.batch import Discard, Loaded, StoredEvent
from millpond.warehouses.flatten import Row, TraitUpdate, flatten_batch, partition_events
from millpond.warehouses.naming import quote, trusted_sql
from millpond.warehouses.postgres import catalog as _catalog
from millpond.warehouses.postgres import merge, plan, traits
from millpond.warehouses.postgres.staging import COPY_TYPES, stage
from millpond.warehouses.types import ColumnType

__all__ = ["BatchRun"]

_PIPELINES = psycopg.Pipeline.is_supported()


class BatchRun:
    """Loads one batch through ``conn`` (autocommit off is not required: it opens its own
    transaction). Raises ``TableProblem`` or ``psycopg.Error``; the caller classifies them."""

    def __init__(self, conn: psycopg.Connection, *, schema_name: str, prefix: str,
                 registry: str, fixed: dict[str, str], discards_table: str,
                 times_table: str, lock_timeout: float = 300.0) -> None:
        self.conn = conn
        self.schema = schema_name
        self.prefix = prefix
        self.registry = registry
        self.fixed = fixed
        self.discards_table = discards_table
        self.times_table = times_table
        self.lock_timeout = lock_timeout
        self.discards: list[Discard] = []
        self.rows: dict[str, int] = {}
        self.inserted: dict[str, int] = {}
        self._pipeline: Any = None
        self._pending: list[tuple[psycopg.Cursor, str, str, int]] = []
        self._n = 0
        #: Copy straight into the tables until one says an id is already there (see above).
        self.direct = True
        self._now: datetime | None = None

    # -- the batch ------------------------------------------------------------------------

    def execute(self, events: list[StoredEvent]) -> Loaded:
        groups, early = partition_events(events)
        lay0 = plan.Layout(self.prefix)
        self.discards = [_rename(d, lay0.physical) for d in early]
        tracks_name = lay0.physical(schema.TRACKS)
        tracks_rows: list[Row] = []
        with self.conn.transaction(), self.conn.cursor() as cur:
            self.cur = cur
            try:
                # Hash joins and aggregates over a whole batch (users/accounts merge) would
                # spill to disk with the default 4 MB; only this transaction gets more.
                cur.execute("SET LOCAL work_mem = '64MB'")
                # A table someone else holds locked (a long ALTER, a dbt run's exclusive
                # lock) makes the batch fail as transient (SQLSTATE 55P03, retried later)
                # instead of stalling the delivery run for as long as the lock is held.
                timeout_ms = int(self.lock_timeout * 1000)
                cur.execute(trusted_sql(f"SET LOCAL lock_timeout = {timeout_ms}"))
                self._now = cur.execute("SELECT now()").fetchone()[0]  # uuid_ts of the batch
                self.catalog = _catalog.read_catalog(self.conn, self.schema, self.registry)
                self._ddl([], self.fixed)
                for logical, group in groups.items():
                    flat = flatten_batch(group)
                    lay = plan.layout(flat, self.prefix)
                    self.discards.extend(_rename(d, lay.physical) for d in flat.discards)
                    group_tracks = lay.rows.get(tracks_name, [])
                    for name, updates in lay.traits.items():  # identifies / groups only
                        self._finish()
                        self._traits(name, updates)  # runs while Python builds the next table
                    name = lay.physical(logical)
                    if logical == schema.TRACKS or name not in lay.rows:
                        tracks_rows.extend(group_tracks)
                        continue
                    rows = lay.rows[name]
                    kind = lay.kinds[name]
                    spec = plan.table_spec(name, kind, rows, self.catalog)
                    misfits: list[Discard] = []
                    load = plan.table_load(spec, rows, self.discards, tracks_name, None,
                                           misfits)
                    self._finish()  # the previous table's merge ran while we built this one
                    self._prepare(spec, lay)
                    self._send(load)
                    if group_tracks and not self._send_tracks(tracks_name, group_tracks,
                                                              load, spec, misfits):
                        tracks_rows.extend(group_tracks)  # new tracks columns: at the end
                self._finish()
                if tracks_rows:
                    self._tracks(tracks_name, tracks_rows)
                merge.write_discards(cur, self.schema, self.discards_table, self.discards)
            except BaseException:
                with suppress(psycopg.Error):  # the first error is the one to report
                    self._close_pipeline()
                raise
            self._close_pipeline()
        return Loaded(events=len(events), rows=self.rows,
                      inserted={n: self.inserted.get(n, 0) for n in self.rows},
                      discards=tuple(self.discards))

    # -- steps ----------------------------------------------------------------------------

    def _ddl(self, specs: list[_catalog.TableSpec], fixed: dict[str, str] | None = None) -> None:
        if _catalog.apply_ddl(self.conn, self.schema, self.registry, self.catalog, specs,
                              fixed or {}):
            self.catalog = _catalog.read_catalog(self.conn, self.schema, self.registry)

    def _prepare(self, spec: _catalog.TableSpec, lay: plan.Layout) -> None:
        self._ddl([spec])
        plan.check_tables(self.catalog, [spec], lay, self.schema)

    def _send(self, load: plan.TableLoad) -> None:
        """Put ``load``'s rows into its table: ``COPY`` in a savepoint, else the merge."""
        self.rows[load.name] = self.rows.get(load.name, 0) + len(load.rows)
        if self.direct and self._copyable(load):
            try:
                with self.conn.transaction():  # a savepoint: a violation undoes this table only
                    self._copy(load)
            except pg_errors.UniqueViolation:
                self.direct = False  # an id is there already (a re-run?): merge from now on
            else:
                self.inserted[load.name] = self.inserted.get(load.name, 0) + len(load.rows)
                return
        self._merge(load)

    def _copyable(self, load: plan.TableLoad) -> bool:
        """Whether every column's real type is millpond's own (binary values fit as they are)."""
        cols = self.catalog.tables.get(load.name, {})
        for name, ctype in zip([*load.columns, "uuid_ts"], [*load.types, ColumnType.TIMESTAMP],
                               strict=True):
            col = cols.get(name)
            if col is None or col.actual != ctype.value:
                return False
        return True

    def _copy(self, load: plan.TableLoad) -> None:
        cols = ", ".join(quote(c) for c in load.columns)
        sql = (f"COPY {quote(self.schema)}.{quote(load.name)} ({cols}, uuid_ts) "
               "FROM STDIN (FORMAT BINARY)")
        with self.cur.copy(trusted_sql(sql)) as copy:
            copy.set_types([*(COPY_TYPES[t] for t in load.types), "timestamptz"])
            write = copy.write_row
            for row in map(tuple.__add__, load.rows, repeat((self._now,))):
                write(row)

    def _merge(self, load: plan.TableLoad) -> None:
        """Stage ``load`` and insert the ids the table lacks; report ids other events hold."""
        self._n += 1
        source = f"_mp_stage_{self._n}"
        stage(self.cur, source, load.columns, load.types, load.rows)
        self.cur.execute(trusted_sql(merge.insert_sql(self.schema, load, source)))
        inserted = max(self.cur.rowcount, 0)
        self.inserted[load.name] = self.inserted.get(load.name, 0) + inserted
        if inserted < len(load.rows):
            self.discards.extend(merge.collisions(self.cur, self.schema, load.name, source))

    def _send_tracks(self, name: str, rows: list[Row], source: plan.TableLoad,
                     source_spec: _catalog.TableSpec, misfits: list[Discard]) -> bool:
        """Put this event table's part of ``tracks``, taken from its typed rows: possible when
        ``tracks`` already has every column these rows need, with the same types. Otherwise
        False: they are loaded at the end, with the batch's other new ``tracks`` columns (so a
        new column's type still comes from all its values)."""
        spec = plan.table_spec(name, schema.TRACKS, rows, self.catalog)
        for col in spec.columns:
            existing = self.catalog.column(name, col)
            if existing is None or existing.actual is None or existing.registered is None:
                return False
        if not plan.derivable(spec, len(rows), {source.name: (source_spec, len(rows))}):
            return False
        lay = plan.Layout(self.prefix, rows={name: rows}, kinds={name: schema.TRACKS})
        plan.check_tables(self.catalog, [spec], lay, self.schema)
        columns = [c for c in spec.columns if c != "uuid_ts"]
        self._send(plan.TableLoad(name, columns, [spec.columns[c] for c in columns],
                                  plan.project(source, columns)))
        self.discards.extend(misfits)
        return True

    def _finish(self) -> None:
        """Wait for the merges in flight; report ids held by other events."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        self._close_pipeline()
        for cur, name, source, expected in pending:
            inserted = max(cur.rowcount, 0)
            self.inserted[name] = self.inserted.get(name, 0) + inserted
            if inserted < expected:
                self.discards.extend(merge.collisions(self.cur, self.schema, name, source))

    def _open_pipeline(self) -> None:
        """Enter pipeline mode, so the next statements return at once (libpq 14+; with an
        older libpq they simply run synchronously: slower, same result)."""
        if _PIPELINES:
            self._pipeline = self.conn.pipeline()
            self._pipeline.__enter__()

    def _close_pipeline(self) -> None:
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            pipeline.__exit__(None, None, None)

    def _tracks(self, name: str, rows: list[Row]) -> None:
        """The ``tracks`` rows not loaded along with their event tables (see _send_tracks)."""
        spec = plan.table_spec(name, schema.TRACKS, rows, self.catalog)
        lay = plan.Layout(self.prefix, rows={name: rows}, kinds={name: schema.TRACKS})
        self._prepare(spec, lay)
        self._send(plan.table_load(spec, rows, self.discards))

    def _traits(self, name: str, updates: list[TraitUpdate]) -> None:
        """Stage ``users`` / ``accounts`` changes and send their merge (pipeline mode)."""
        spec = plan.trait_spec(name, updates, self.catalog)
        lay = plan.Layout(self.prefix, traits={name: updates})
        self._prepare(spec, lay)
        load = plan.trait_load(spec, updates, self.discards)
        self.rows[name] = len(load.rows)
        if not load.rows:
            return
        self._n += 1
        staged = traits.stage_rows(self.cur, load, self._n)
        self._open_pipeline()
        for sql, params in traits.merge_statements(self.schema, load, self.times_table, staged):
            self.cur.execute(trusted_sql(sql), params or None)
        self._pending.append((self.cur, name, "", -1))  # -1: no collision check


def _rename(d: Discard, physical: Any) -> Discard:
    name = physical(d.table)
    return d if name == d.table else Discard(d.seq, d.message_id, name, d.column, d.value,
                                             d.reason)

