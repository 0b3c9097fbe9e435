"""Staging rows in a temporary table with a binary ``COPY``: the one way rows enter PostgreSQL.

Why binary: the values are already typed Python objects (see :mod:`.plan`), so psycopg's binary
dumpers write them as they are, with nothing formatted as text and parsed back by the server.
Why temporary tables: they are not WAL-logged and carry no index, so staging costs little, and
``ON COMMIT DROP`` cleans up even when the transaction fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from millpond.warehouses.naming import quote, trusted_sql
from millpond.warehouses.types import ColumnType

__all__ = ["COPY_TYPES", "stage"]

#: psycopg's names for the binary dumpers of each column type.
COPY_TYPES = {
    ColumnType.TEXT: "text",
    ColumnType.BIGINT: "int8",
    ColumnType.DOUBLE: "float8",
    ColumnType.BOOLEAN: "bool",
    ColumnType.TIMESTAMP: "timestamptz",
}


def stage(cur: psycopg.Cursor, name: str, columns: list[str], types: list[ColumnType],
          rows: Sequence[Sequence[Any]]) -> None:
    """A temporary table ``name`` (dropped at commit) holding ``rows``, filled by binary COPY."""
    defs = ", ".join(f"{quote(c)} {t.value}" for c, t in zip(columns, types, strict=True))
    cur.execute(trusted_sql(f"CREATE TEMP TABLE {quote(name)} ({defs}) ON COMMIT DROP"))
    cols = ", ".join(quote(c) for c in columns)
    with cur.copy(trusted_sql(f"COPY {quote(name)} ({cols}) FROM STDIN (FORMAT BINARY)")) as copy:
        copy.set_types([COPY_TYPES[t] for t in types])
        write = copy.write_row
        for row in rows:
            write(row)
