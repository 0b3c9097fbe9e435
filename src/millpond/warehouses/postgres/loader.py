"""The ``postgres`` loader: a batch of stored events in, one :data:`LoadOutcome` out.

How a batch goes: :class:`~.run.BatchRun` flattens it by Segment's schema, table by table,
creates missing tables and columns, rejects it if a table was changed by hand so it cannot
load, coerces every value to its column's type (misfits become discards) and merges it in one
transaction (``COPY`` into temporary tables, ``INSERT ... ON CONFLICT (id) DO NOTHING``,
``users`` / ``accounts`` by trait time, discards into ``millpond_discards``). Each module says
why its step is built that way.

Errors are classified by :mod:`.errors`; a broken connection is dropped and re-opened by the
next ``load``. The loader holds one connection and is not thread-safe: one loader per
destination, called by one delivery run at a time.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence

import psycopg
from psycopg import sql

from millpond.delivery.screen import Screen
from millpond.warehouses.batch import LoadOutcome, StoredEvent
from millpond.warehouses.naming import fit_identifier
from millpond.warehouses.postgres import deletion_lock, merge
from millpond.warehouses.postgres.errors import TableProblem, classify
from millpond.warehouses.postgres.run import BatchRun
from millpond.warehouses.postgres.settings import PostgresSettings, describe_connect_error

__all__ = ["PostgresLoader"]


class PostgresLoader:
    """Loads batches into one schema of one PostgreSQL database.

    ``connect`` builds a connection from the settings (tests pass their own); the default is
    ``psycopg.connect(dsn, connect_timeout=...)``.
    """

    def __init__(self, settings: PostgresSettings,
                 connect: Callable[[PostgresSettings], psycopg.Connection] | None = None,
                 screen: Screen | None = None) -> None:
        self.settings = settings
        #: Whose events must not be written (regulations), asked inside each batch's
        #: transaction (:mod:`millpond.warehouses.screening`).
        self.screen = screen
        self._connect = connect or _default_connect
        self._conn: psycopg.Connection | None = None
        prefix = settings.table_prefix
        self.schema = settings.schema
        self.registry = fit_identifier(prefix + "millpond_columns")
        self.discards_table = fit_identifier(prefix + "millpond_discards")
        #: Where older versions kept trait times (converted on sight: :mod:`.traits`).
        self.times_table = fit_identifier(prefix + "millpond_trait_times")

    @property
    def batch_interval_seconds(self) -> float:
        """How often the caller should load a micro-batch (a setting, at least 5 s)."""
        return self.settings.batch_interval_seconds

    # -- connection -----------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                conn.close()
            self._conn = None
            conn = self._connect(self.settings)
            self._conn = conn
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> PostgresLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- loading --------------------------------------------------------------------------

    def load(self, events: Sequence[StoredEvent]) -> LoadOutcome:
        """Load ``events`` exactly once; never raises for database trouble, never retries."""
        try:
            conn = self._connection()
        except psycopg.Error as exc:
            return classify(_ConnectError(describe_connect_error(exc, self.settings.dsn)))
        run = BatchRun(conn, schema_name=self.schema, prefix=self.settings.table_prefix,
                       registry=self.registry, fixed=self._fixed_tables(),
                       discards_table=self.discards_table, times_table=self.times_table,
                       lock_timeout=self.settings.lock_timeout_seconds)
        # A batch allocates many small containers and frees most of them at once; the cyclic
        # GC, triggered by allocation counts, would scan them (and the caller's heap) over
        # and over for nothing: pause it for the batch.
        gc_was_on = gc.isenabled()
        gc.disable()
        try:
            return run.execute(list(events), self.screen)
        except (TableProblem, psycopg.Error) as exc:
            self._rollback(conn)
            return classify(exc)
        finally:
            if gc_was_on:
                gc.enable()

    def forget(self, ids: Sequence[str]) -> int:
        """Delete the people's rows (a regulation's deletion): in every table of the
        schema, those whose ``user_id`` or ``anonymous_id`` is one of ``ids``, and the
        ``users`` rows whose ``id`` is; then the discards of the events those rows held
        (``millpond_discards`` keys them by ``seq`` alone, and their ``value`` is the
        person's own data: a trait or property that did not fit its column). One
        transaction; idempotent. How many rows. Waits for the batches under way to commit
        first (:mod:`.deletion_lock`)."""
        conn = self._connection()
        users = self.settings.table_prefix + "users"
        wanted = list(ids)
        removed = 0
        seqs: set[int] = set()
        with conn.transaction():
            deletion_lock.take(conn, self.schema)
            tables = conn.execute(
                "SELECT table_name::text, array_agg(column_name::text) FROM"
                " information_schema.columns WHERE table_schema = %s AND column_name IN"
                " ('user_id', 'anonymous_id', 'id', 'millpond_seq', 'seq')"
                " GROUP BY table_name",
                (self.schema,)).fetchall()
            for table, columns in tables:
                keys = [c for c in ("user_id", "anonymous_id") if c in columns]
                if table == users and "id" in columns:
                    keys.append("id")
                if not keys:
                    continue
                where = sql.SQL(" OR ").join(
                    sql.SQL("{} = ANY(%s)").format(sql.Identifier(k)) for k in keys)
                returning = (sql.SQL(" RETURNING millpond_seq") if "millpond_seq" in columns
                             else sql.SQL(""))
                cur = conn.execute(sql.SQL("DELETE FROM {}.{} WHERE ").format(
                    sql.Identifier(self.schema), sql.Identifier(table)) + where + returning,
                    [wanted] * len(keys))
                removed += max(cur.rowcount, 0)
                if "millpond_seq" in columns:
                    seqs.update(seq for (seq,) in cur.fetchall() if seq is not None)
            if seqs and any(table == self.discards_table for table, _ in tables):
                cur = conn.execute(sql.SQL("DELETE FROM {}.{} WHERE seq = ANY(%s)").format(
                    sql.Identifier(self.schema), sql.Identifier(self.discards_table)),
                    [sorted(seqs)])
                removed += max(cur.rowcount, 0)
        return removed

    def _fixed_tables(self) -> dict[str, str]:
        return {
            self.discards_table: merge.discards_table_sql(self.schema, self.discards_table),
        }

    def _rollback(self, conn: psycopg.Connection) -> None:
        """Leave the connection usable (or drop it when it is broken)."""
        if conn.broken or conn.closed:
            self.close()
            return
        try:
            conn.rollback()
        except psycopg.Error:
            self.close()


class _ConnectError(psycopg.OperationalError):
    """A failed connect, with a message saying what to check (always transient at load)."""


def _default_connect(settings: PostgresSettings) -> psycopg.Connection:
    # autocommit: each catalog read stands alone; DDL and the merge open explicit transactions.
    return psycopg.connect(settings.dsn, autocommit=True,
                           connect_timeout=max(1, round(settings.connect_timeout_seconds)),
                           application_name="millpond-warehouse")
