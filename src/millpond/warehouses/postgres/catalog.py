"""What the warehouse looks like, what a batch needs, and the DDL that makes it so.

Why a registry of our own (``millpond_columns``): PostgreSQL's catalog says what a column *is*,
not what millpond *made* it. Only with both can a load tell "a new column, infer its type" from
"a column someone altered by hand" (which must stop the load with a clear error rather than turn
every value into a discard). The registry is written in the same transaction as the DDL, so the
two never disagree about columns millpond created.

Rules:

- a column's type is the registered one; a column in neither place gets the type inferred from
  the batch (:mod:`millpond.warehouses.types`); a column someone added by hand with one of the
  five types millpond uses is adopted with that type;
- the real type may differ from the registered one only if it holds every value of it
  (:data:`ACCEPTS`: e.g. a ``bigint`` column widened by hand to ``numeric`` or ``text`` is fine,
  one narrowed to ``integer`` is not); otherwise the load is rejected naming table and column;
- a ``NOT NULL`` added by hand to a column the batch leaves empty in some row rejects the load
  the same way;
- DDL is idempotent (``CREATE ... IF NOT EXISTS``, ``ADD COLUMN IF NOT EXISTS``) and runs inside
  the batch's transaction (PostgreSQL's DDL is transactional): a failed batch leaves no table,
  column or registry entry behind, and readers never see a column before its first values.
  The price is a short exclusive lock on a table while the batch that adds its column commits;
  once a source's columns exist (after the first batches), batches run no DDL at all.
- a table has at most :data:`MAX_COLUMNS` columns (PostgreSQL's limit is 1600); values for
  columns beyond it are discarded with that reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from millpond.warehouses.naming import quote, trusted_sql
from millpond.warehouses.types import ColumnType

__all__ = ["ACCEPTS", "MAX_COLUMNS", "Catalog", "TableSpec", "apply_ddl", "needs_ddl",
           "read_catalog"]

MAX_COLUMNS = 1500

T = ColumnType
#: Registered type -> real column types (``format_type`` spelling) that hold all its values.
ACCEPTS: dict[ColumnType, frozenset[str]] = {
    T.TEXT: frozenset({"text", "character varying"}),
    T.BIGINT: frozenset({"bigint", "numeric", "double precision", "text", "character varying"}),
    T.DOUBLE: frozenset({"double precision", "numeric", "text", "character varying"}),
    T.BOOLEAN: frozenset({"boolean", "text", "character varying"}),
    T.TIMESTAMP: frozenset({"timestamp with time zone", "text", "character varying"}),
}
_ADOPTABLE = {t.value: t for t in ColumnType}


@dataclass(slots=True)
class Column:
    actual: str | None = None
    """``format_type`` of the real column, None when it does not exist."""
    not_null: bool = False
    has_default: bool = False
    registered: ColumnType | None = None


@dataclass(slots=True)
class Catalog:
    """The real tables of the schema and the registry, read in one round trip each."""

    tables: dict[str, dict[str, Column]] = field(default_factory=dict)

    def column(self, table: str, name: str) -> Column | None:
        cols = self.tables.get(table)
        return None if cols is None else cols.get(name)

    def type_of(self, table: str, name: str) -> ColumnType | None:
        """The type values are coerced to: registered, else adopted from a hand-made column."""
        col = self.column(table, name)
        if col is None:
            return None
        if col.registered is not None:
            return col.registered
        return _ADOPTABLE.get(col.actual or "")


@dataclass(slots=True)
class TableSpec:
    """What one batch writes to one table: the columns and the type each must have."""

    name: str
    key: str
    """The primary-key column (``id``)."""
    columns: dict[str, ColumnType]
    dropped: frozenset[str] = frozenset()
    """Columns the batch has values for but the table has no room for (MAX_COLUMNS)."""


def read_catalog(conn: psycopg.Connection, schema: str, registry: str) -> Catalog:
    """Real columns of every table in ``schema`` plus the registry (if it exists yet)."""
    catalog = Catalog()
    rows = conn.execute(
        """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               a.atthasdef
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND a.attnum > 0
          AND NOT a.attisdropped
        """,
        (schema,),
    ).fetchall()
    for table, name, actual, not_null, has_default in rows:
        catalog.tables.setdefault(table, {})[name] = Column(actual, not_null, has_default)
    if registry in catalog.tables:
        for table, name, registered in conn.execute(trusted_sql(
            f"SELECT table_name, column_name, type FROM {quote(schema)}.{quote(registry)}"
        )):
            col = catalog.tables.setdefault(table, {}).setdefault(name, Column())
            try:
                col.registered = ColumnType(registered)
            except ValueError:
                col.registered = None
    return catalog


def needs_ddl(catalog: Catalog, registry: str, specs: list[TableSpec],
              fixed: dict[str, str]) -> bool:
    """Whether :func:`apply_ddl` would run anything (without asking the database): once a
    source's tables and columns exist, a batch checks this and leaves the connection to the
    rows being copied."""
    if registry not in catalog.tables or any(n not in catalog.tables for n in fixed):
        return True
    for spec in specs:
        existing = catalog.tables.get(spec.name)
        if existing is None:
            return True
        for name in spec.columns:
            col = existing.get(name)
            if col is None or col.actual is None or col.registered is None:
                return True
    return False


def _column_sql(name: str, ctype: ColumnType, key: str) -> str:
    return f"{quote(name)} {ctype.value}" + (" PRIMARY KEY" if name == key else "")


def apply_ddl(conn: psycopg.Connection, schema: str, registry: str, catalog: Catalog,
              specs: list[TableSpec], fixed: dict[str, str]) -> bool:
    """Create what ``specs`` need and is missing (in a savepoint of the caller's transaction,
    or a transaction of its own); True if anything ran.

    ``fixed`` maps the bookkeeping tables (discards, trait times) to their ``CREATE TABLE``:
    their shape is fixed, so they are created when missing and never registered. ``catalog``
    must be fresh; the caller re-reads it afterwards.
    """
    statements: list[str] = []
    register: list[tuple[str, str, str]] = []
    qs = quote(schema)
    if not catalog.tables and not _schema_exists(conn, schema):
        statements.append(f"CREATE SCHEMA IF NOT EXISTS {qs}")
    if registry not in catalog.tables:
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {qs}.{quote(registry)} (table_name text NOT NULL, "
            "column_name text NOT NULL, type text NOT NULL, created_at timestamptz NOT NULL "
            "DEFAULT now(), PRIMARY KEY (table_name, column_name))"
        )
    statements.extend(sql for name, sql in fixed.items() if name not in catalog.tables)
    for spec in specs:
        existing = catalog.tables.get(spec.name)
        if existing is None:
            cols = ", ".join(_column_sql(n, t, spec.key) for n, t in spec.columns.items())
            statements.append(f"CREATE TABLE IF NOT EXISTS {qs}.{quote(spec.name)} ({cols})")
        else:
            for name, ctype in spec.columns.items():
                if name not in existing or existing[name].actual is None:
                    statements.append(
                        f"ALTER TABLE {qs}.{quote(spec.name)} ADD COLUMN IF NOT EXISTS "
                        f"{_column_sql(name, ctype, '')}"
                    )
        for name, ctype in spec.columns.items():
            col = None if existing is None else existing.get(name)
            if col is None or col.registered is None:
                adopted = None if col is None else _ADOPTABLE.get(col.actual or "")
                register.append((spec.name, name, (adopted or ctype).value))
    if not statements and not register:
        return False
    with conn.transaction():
        for sql in statements:
            conn.execute(trusted_sql(sql))
        if register:
            with conn.cursor() as cur:
                cur.executemany(
                    trusted_sql(f"INSERT INTO {qs}.{quote(registry)} (table_name, column_name, "
                                "type) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING"),
                    register,
                )
    return True


def _schema_exists(conn: psycopg.Connection, schema: str) -> bool:
    row = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
    return row is not None
