"""Connections to the state database on PostgreSQL: one per thread, autocommit.

Why one per thread: a psycopg connection serves one statement at a time, and the state
stores are called from the event loop's worker threads, the pumps' checkpoints and
imports at once; a connection each keeps them from queueing behind one another without a
pool to size. Each write is one statement (autocommit: durable once it returns, with
PostgreSQL's default ``synchronous_commit``) or one :meth:`PgState.transaction`.

Why a schema: ``schema`` (default ``millpond``) keeps millpond's tables apart from
whatever else lives in the database, and lets tests give each test a schema of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from contextlib import contextmanager
from typing import Any, LiteralString

import psycopg
from psycopg import sql
from psycopg.rows import DictRow, dict_row

from millpond.storage.contracts import StorageUnavailable

__all__ = ["DDL_LOCK", "PgState", "constraint_of"]

Conn = psycopg.Connection[DictRow]
#: Schema changes of every process, one at a time (an arbitrary key): concurrent ``CREATE
#: … IF NOT EXISTS`` of one name still collide in PostgreSQL's catalog.
DDL_LOCK = 0x6D696C6C64646C


def constraint_of(exc: psycopg.errors.UniqueViolation) -> str:
    """The name of the unique constraint ``exc`` violated (``sources_name_key``)."""
    return exc.diag.constraint_name or ""


class PgState:
    """The state database: a DSN, a schema, a connection per thread."""

    def __init__(self, dsn: str, schema: str = "millpond", connect_timeout: int = 5):
        self._dsn = dsn
        self.schema = schema
        self._timeout = connect_timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[Conn] = []
        self._closed = False
        self._deferred: list[LiteralString] | None = None
        with self.transaction() as conn:
            # under the DDL lock: two processes creating one schema at once collide on
            # PostgreSQL's catalog ("duplicate key"), IF NOT EXISTS or not
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK,))
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                sql.Identifier(schema)))

    def conn(self) -> Conn:
        """This thread's connection, opened on first use. Raises StorageUnavailable when the
        server cannot be reached."""
        current: Conn | None = getattr(self._local, "conn", None)
        if current is not None and not current.closed:
            return current
        if self._closed:
            raise StorageUnavailable("the state database is closed")
        try:
            conn = Conn.connect(self._dsn, autocommit=True, row_factory=dict_row,
                                connect_timeout=self._timeout,
                                options=f"-c search_path={self.schema}")
        except psycopg.OperationalError as exc:
            raise StorageUnavailable(
                f"cannot reach PostgreSQL: {str(exc).strip().splitlines()[0]}") from exc
        with self._lock:
            self._all.append(conn)
        self._local.conn = conn
        return conn

    def execute(self, query: LiteralString, params: Any = None) -> psycopg.Cursor[DictRow]:
        """One statement on this thread's connection; StorageUnavailable when the server
        went away (the next call connects again)."""
        try:
            return self.conn().execute(query, params)
        except psycopg.OperationalError as exc:
            raise self._lost(exc) from exc

    @contextmanager
    def transaction(self) -> Generator[Conn]:
        """One transaction on this thread's connection: all of it commits, or none
        (StorageUnavailable when the server went away: nothing was committed)."""
        conn = self.conn()
        try:
            with conn.transaction():
                yield conn
        except psycopg.OperationalError as exc:
            raise self._lost(exc) from exc

    def _lost(self, exc: Exception) -> StorageUnavailable:
        conn: Conn | None = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            with self._lock:
                if conn in self._all:
                    self._all.remove(conn)
            conn.close()
        return StorageUnavailable(
            f"lost the connection to PostgreSQL: {str(exc).strip().splitlines()[0]}")

    def schema_bytes(self) -> int:
        """Bytes of this schema's tables with their indexes and TOAST (``storage
        status``)."""
        row = self.execute(
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) AS n FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND c.relkind = 'r'").fetchone()
        return 0 if row is None else int(row["n"])

    def create_tables(self, ddl: LiteralString) -> None:
        """Create a store's tables (``IF NOT EXISTS``), now or, inside
        :meth:`deferred_tables`, with every other store's when it ends."""
        if self._deferred is not None:
            self._deferred.append(ddl)
            return
        self._run_ddl([ddl])

    @contextmanager
    def deferred_tables(self) -> Generator[None]:
        """Collect the ``create_tables`` of the stores opened inside, and run them all in
        one transaction at the end: one commit instead of one per store (opening every
        store of a fresh schema took 0.3-0.8 s of commits, 12 of them)."""
        self._deferred = []
        try:
            yield
            ddl = self._deferred
        finally:
            self._deferred = None
        self._run_ddl(ddl)

    def _run_ddl(self, ddl: list[LiteralString]) -> None:
        if not ddl:
            return
        with self.transaction() as conn:
            # processes starting together: one creates, the others find the tables
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK,))
            for statement in ddl:
                conn.execute(statement)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
