"""One batch, one transaction, table by table: Python's work overlaps the server's.

Why table by table, with a writer thread: a load spends about as long in Python (flattening,
type checks, building rows) as PostgreSQL spends storing rows. Done one after the other those
add up; done table by table they overlap: while the writer thread copies table *k* (waiting on
the server, the GIL released), the batch's own thread flattens and builds table *k+1*. Nothing
about the result changes, because a table's rows and column types only depend on its own events
(the groups of :func:`millpond.warehouses.flatten.partition_events`), and the connection is only
ever used by one thread at a time: the batch's thread waits for the writer (:meth:`BatchRun._drain`)
before it runs DDL itself, which only happens when a table or column is new.

Why rows are copied straight into their tables: a ``COPY`` into the real table costs the server
what a raw ``COPY`` costs, while staging in a temporary table and merging with
``INSERT ... SELECT ... ON CONFLICT`` costs it about twice as much (the bench showed the merge as
the largest part of a load). The merge is only needed when an ``id`` is already there: a batch
run again after a crash, or a messageId another source reused. So each table's ``COPY`` runs in
a savepoint; a unique violation rolls back just that table's rows, and from then on the batch
takes the merge path (:func:`_merge`), which inserts what is missing and reports collisions.
The outcome is the same either way; only the cost differs. A column whose real type differs
from millpond's (widened by hand to ``numeric`` or ``text``) cannot take binary values of
millpond's type, so such a table is always merged (the ``INSERT ... SELECT`` casts).

The steps, all in one transaction (so a failure anywhere leaves nothing of the batch):

1. read the catalog and the column registry (:mod:`.catalog`), create the bookkeeping tables if
   missing;
2. per table (event tables, identifies, pages, screens, groups, aliases): flatten its events,
   work out its columns (:func:`.plan.table_spec`), build its rows; create or alter the table
   if needed (transactional DDL: a new column is only visible once the batch commits), reject
   the batch if the table was changed by hand so it cannot load (:func:`.plan.check_tables`),
   then hand the rows to the writer (``COPY`` into the table, or the merge);
3. ``tracks``: the standard and context columns of each event table's typed rows, copied the
   same way (no second coercion of the same values);
4. ``users`` / ``accounts`` by trait time (:mod:`.traits`), then the discards.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import datetime
from itertools import repeat
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from millpond.delivery.screen import Screen
from millpond.warehouses import schema
from millpond.warehouses.batch import Discard, Loaded, StoredEvent
from millpond.warehouses.columns import Columns, concat, group_columns
from millpond.warehouses.flatten import TraitUpdate, partition_events
from millpond.warehouses.naming import quote, trusted_sql
from millpond.warehouses.postgres import catalog as _catalog
from millpond.warehouses.postgres import deletion_lock, merge, plan, traits
from millpond.warehouses.postgres.staging import COPY_TYPES, stage
from millpond.warehouses.screening import screened
from millpond.warehouses.types import ColumnType

__all__ = ["BatchRun"]

#: What one job of the writer did: (table, rows inserted or changed, collisions found).
_Done = tuple[str, int, list[Discard]]


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
        self._n = 0
        #: Events left out by the screen at the batch's start (regulations).
        self.screened: dict[int, str] = {}
        #: Copy straight into the tables until one says an id is already there (see above).
        #: Read and written by the writer thread only.
        self._direct = True
        self._now: datetime | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._jobs: list[Future[_Done]] = []

    # -- the batch ------------------------------------------------------------------------

    def execute(self, events: list[StoredEvent], screen: Screen | None = None) -> Loaded:
        """Load ``events`` less those ``screen`` blocks by the time the batch holds the
        deletion lock (:mod:`.deletion_lock`)."""
        tracks_rows: list[Columns] = []
        with self.conn.transaction(), self.conn.cursor() as cur:
            self.cur = cur
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="millpond-pg-writer")
            try:
                # Hash joins and aggregates over a whole batch (users/accounts merge) would
                # spill to disk with the default 4 MB; only this transaction gets more.
                cur.execute("SET LOCAL work_mem = '64MB'")
                # A table someone else holds locked (a long ALTER, a dbt run's exclusive
                # lock) makes the batch fail as transient (SQLSTATE 55P03, retried later)
                # instead of stalling the delivery run for as long as the lock is held.
                timeout_ms = int(self.lock_timeout * 1000)
                cur.execute(trusted_sql(f"SET LOCAL lock_timeout = {timeout_ms}"))
                deletion_lock.share(cur, self.schema)
                kept, self.screened = screened(events, screen)
                groups, early = partition_events(list(kept))
                lay0 = plan.Layout(self.prefix)
                self.discards = [_rename(d, lay0.physical) for d in early]
                tracks_name = lay0.physical(schema.TRACKS)
                now = cur.execute("SELECT now()").fetchone()
                self._now = now[0] if now else None  # uuid_ts of the batch
                self.catalog = _catalog.read_catalog(self.conn, self.schema, self.registry)
                self._ddl([], self.fixed)
                if self.times_table in self.catalog.tables:
                    self._convert_times()
                for logical, group in groups.items():
                    lay = self._layout(logical, group)
                    group_tracks = lay.rows.get(tracks_name)
                    for name, updates in lay.traits.items():  # identifies / groups only
                        self._traits(name, updates)
                    name = lay.physical(logical)
                    if logical == schema.TRACKS or name not in lay.rows:
                        if group_tracks:
                            tracks_rows.append(group_tracks)
                        continue
                    rows = lay.rows[name]
                    kind = lay.kinds[name]
                    spec = plan.table_spec(name, kind, rows, self.catalog)
                    misfits: list[Discard] = []
                    load = plan.table_load(spec, rows, self.discards, tracks_name, None,
                                           misfits)
                    self._prepare(spec, lay)
                    self._send(load)
                    if group_tracks and not self._send_tracks(tracks_name, group_tracks,
                                                              load, spec, misfits):
                        tracks_rows.append(group_tracks)  # new tracks columns: at the end
                if tracks_rows:
                    self._tracks(tracks_name, concat(tracks_rows))
                self._drain()
                merge.write_discards(cur, self.schema, self.discards_table, self.discards)
            finally:
                # The connection is the writer's until its jobs end, error or not (the
                # rollback on the way out needs it); the first error is the one reported.
                wait(self._jobs)
                self._writer.shutdown()
        return Loaded(events=len(events), rows=self.rows,
                      inserted={n: self.inserted.get(n, 0) for n in self.rows},
                      discards=tuple(self.discards), screened=self.screened)

    # -- steps of the batch's thread ------------------------------------------------------

    def _layout(self, logical: str, group: list[StoredEvent]) -> plan.Layout:
        """One group's rows per table: cut column by column where its events share one
        shape, else flattened event by event (:func:`~millpond.warehouses.columns.
        group_columns`); the rows and discards are the same either way."""
        tables, updates, discards = group_columns(group, logical)
        lay = plan.Layout(self.prefix)
        self.discards.extend(_rename(d, lay.physical) for d in discards)
        for table, cols in tables.items():
            name = lay.physical(table)
            lay.rows[name] = cols
            lay.kinds[name] = table if table in schema.FIXED_TABLES else schema.EVENT_TABLE
        for update in updates:
            lay.traits.setdefault(lay.physical(update.table), []).append(update)
        return lay

    def _drain(self) -> None:
        """Wait for the writer's jobs; count what they did; raise the first job's error."""
        jobs, self._jobs = self._jobs, []
        wait(jobs)
        for job in jobs:
            name, inserted, collisions = job.result()
            self.inserted[name] = self.inserted.get(name, 0) + inserted
            self.discards.extend(collisions)

    def _ddl(self, specs: list[_catalog.TableSpec], fixed: dict[str, str] | None = None) -> None:
        fixed = fixed or {}
        if not _catalog.needs_ddl(self.catalog, self.registry, specs, fixed):
            return
        self._drain()  # the connection is needed here
        if _catalog.apply_ddl(self.conn, self.schema, self.registry, self.catalog, specs,
                              fixed):
            self.catalog = _catalog.read_catalog(self.conn, self.schema, self.registry)

    def _convert_times(self) -> None:
        """An older version's trait-times table onto the users / accounts rows (once)."""
        tables = [plan.Layout(self.prefix).physical(t) for t in (schema.USERS, schema.ACCOUNTS)]
        with self.conn.cursor() as cur:
            traits.convert_times_table(cur, self.schema, self.times_table,
                                       [t for t in tables if t in self.catalog.tables])
        self.catalog = _catalog.read_catalog(self.conn, self.schema, self.registry)

    def _prepare(self, spec: _catalog.TableSpec, lay: plan.Layout) -> None:
        self._ddl([spec])
        plan.check_tables(self.catalog, [spec], lay, self.schema)

    def _send(self, load: plan.TableLoad) -> None:
        """Hand ``load`` to the writer: ``COPY`` in a savepoint, else the merge."""
        self.rows[load.name] = self.rows.get(load.name, 0) + len(load.rows)
        copyable = _copyable(self.catalog, load)
        assert self._writer is not None
        self._jobs.append(self._writer.submit(self._put, load, copyable))

    def _send_tracks(self, name: str, rows: Columns, source: plan.TableLoad,
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

    def _tracks(self, name: str, rows: Columns) -> None:
        """The ``tracks`` rows not loaded along with their event tables (see _send_tracks)."""
        spec = plan.table_spec(name, schema.TRACKS, rows, self.catalog)
        lay = plan.Layout(self.prefix, rows={name: rows}, kinds={name: schema.TRACKS})
        self._prepare(spec, lay)
        self._send(plan.table_load(spec, rows, self.discards))

    def _traits(self, name: str, updates: list[TraitUpdate]) -> None:
        """Hand ``users`` / ``accounts`` changes to the writer (stage, then merge by time)."""
        spec = plan.trait_spec(name, updates, self.catalog)
        lay = plan.Layout(self.prefix, traits={name: updates})
        self._prepare(spec, lay)
        if self.catalog.column(name, schema.TRAIT_TIMES) is None:  # a new table
            self._drain()
            with self.conn.cursor() as cur:
                traits.add_times_column(cur, self.schema, name)
            self.catalog.tables[name][schema.TRAIT_TIMES] = _catalog.Column("jsonb")
        load = plan.trait_load(spec, updates, self.discards)
        self.rows[name] = self.rows.get(name, 0) + len(load.rows)
        if load.rows:
            self._n += 1
            assert self._writer is not None
            self._jobs.append(self._writer.submit(self._merge_traits, load, self._n))

    # -- the writer thread's jobs ---------------------------------------------------------

    def _put(self, load: plan.TableLoad, copyable: bool) -> _Done:
        if self._direct and copyable:
            try:
                with self.conn.transaction():  # a savepoint: a violation undoes this table only
                    self._copy(load)
            except pg_errors.UniqueViolation:
                self._direct = False  # an id is there already (a re-run?): merge from now on
            else:
                return load.name, len(load.rows), []
        return self._merge(load)

    def _copy(self, load: plan.TableLoad) -> None:
        cols = ", ".join(quote(c) for c in load.columns)
        sql = (f"COPY {quote(self.schema)}.{quote(load.name)} ({cols}, uuid_ts) "
               "FROM STDIN (FORMAT BINARY)")
        with self.conn.cursor() as cur, cur.copy(trusted_sql(sql)) as copy:
            copy.set_types([*(COPY_TYPES[t] for t in load.types), "timestamptz"])
            write = copy.write_row
            for row in map(tuple.__add__, load.rows, repeat((self._now,))):
                write(row)

    def _merge(self, load: plan.TableLoad) -> _Done:
        """Stage ``load`` and insert the ids the table lacks; report ids other events hold."""
        self._n += 1
        source = f"_mp_stage_{self._n}"
        with self.conn.cursor() as cur:
            stage(cur, source, load.columns, load.types, load.rows)
            cur.execute(trusted_sql(merge.insert_sql(self.schema, load, source)))
            inserted = max(cur.rowcount, 0)
            collisions = [] if inserted == len(load.rows) else \
                merge.collisions(cur, self.schema, load.name, source)
        return load.name, inserted, collisions

    def _merge_traits(self, load: plan.TraitLoad, n: int) -> _Done:
        with self.conn.cursor() as cur:
            return load.name, traits.merge(cur, self.schema, load, n), []


def _copyable(catalog: _catalog.Catalog, load: plan.TableLoad) -> bool:
    """Whether every column's real type is millpond's own (binary values fit as they are)."""
    cols = catalog.tables.get(load.name, {})
    for name, ctype in zip([*load.columns, "uuid_ts"], [*load.types, ColumnType.TIMESTAMP],
                           strict=True):
        col = cols.get(name)
        if col is None or col.actual != ctype.value:
            return False
    return True


def _rename(d: Discard, physical: Any) -> Discard:
    name = physical(d.table)
    return d if name == d.table else Discard(d.seq, d.message_id, name, d.column, d.value,
                                             d.reason)
