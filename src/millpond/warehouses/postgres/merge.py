"""The SQL of a batch's merge: ``INSERT ... SELECT`` from staged rows, keyed by ``id``.

When: a table's direct ``COPY`` found an ``id`` already there, or a column's type was changed
by hand (:mod:`.run`). Why this shape:

- rows are staged in temporary tables by binary ``COPY`` (:mod:`.staging`), then
  ``INSERT ... SELECT ... ON CONFLICT (id) DO NOTHING`` makes a batch idempotent: running it
  again (after a crash between the commit and the caller's checkpoint) inserts nothing. The
  rows are identical anyway, since a stored event never changes; ``DO NOTHING`` also keeps
  ``uuid_ts`` (the load time) of the first load.
- An ``id`` already in the table from a *different* stored event (two sources reusing a
  messageId) is not silently skipped: :func:`collisions` turns it into a discard naming the
  event that holds the id. It only runs when the insert skipped rows, so a first load pays
  nothing for it.

The transaction around all of it, and the order of the steps, are :mod:`.run`'s.
"""

from __future__ import annotations

import psycopg

from millpond.warehouses.batch import Discard
from millpond.warehouses.naming import quote, trusted_sql
from millpond.warehouses.postgres.plan import TableLoad
from millpond.warehouses.postgres.staging import stage
from millpond.warehouses.types import ColumnType

__all__ = ["collisions", "discards_table_sql", "insert_sql", "write_discards"]


def discards_table_sql(schema: str, table: str) -> str:
    """``millpond_discards``: one row per value (or event) not stored as sent.

    Keyed by (seq, table, column, reason), so re-running a batch adds nothing; ``column_name``
    is ``''`` when the whole event was discarded.
    """
    return (
        f"CREATE TABLE IF NOT EXISTS {quote(schema)}.{quote(table)} ("
        "seq bigint NOT NULL, message_id text NOT NULL, table_name text NOT NULL, "
        "column_name text NOT NULL DEFAULT '', value text, reason text NOT NULL, "
        "discarded_at timestamptz NOT NULL DEFAULT now(), "
        "PRIMARY KEY (seq, table_name, column_name, reason))"
    )


def insert_sql(schema: str, load: TableLoad, source: str) -> str:
    """Merge ``source`` (a stage, or a derived ``(SELECT ...)``) into ``load``'s table."""
    cols = ", ".join(quote(c) for c in load.columns)
    return (f"INSERT INTO {quote(schema)}.{quote(load.name)} ({cols}, uuid_ts) "
            f"SELECT {cols}, now() FROM {source} s ON CONFLICT (id) DO NOTHING")


def collisions(cur: psycopg.Cursor, schema: str, table: str, source: str) -> list[Discard]:
    """Rows of ``source`` whose id the table holds from *another* event (not a re-run)."""
    target = f"{quote(schema)}.{quote(table)}"
    cur.execute(trusted_sql(
        f"SELECT s.millpond_seq, s.id, t.millpond_seq, t.millpond_source_id "
        f"FROM {source} s JOIN {target} t ON t.id = s.id "
        "WHERE t.millpond_seq IS DISTINCT FROM s.millpond_seq"
    ))
    return [Discard(seq, message_id, table, None, None,
                    f"id {message_id!r} is already in {table}, loaded from seq {other_seq} "
                    f"(source {other_source}); a messageId is loaded once per table")
            for seq, message_id, other_seq, other_source in cur.fetchall()]


def write_discards(cur: psycopg.Cursor, schema: str, table: str,
                    discards: list[Discard]) -> None:
    if not discards:
        return
    columns = ["seq", "message_id", "table_name", "column_name", "value", "reason"]
    types = [ColumnType.BIGINT, ColumnType.TEXT, ColumnType.TEXT, ColumnType.TEXT,
             ColumnType.TEXT, ColumnType.TEXT]
    rows = [[d.seq, d.message_id, d.table, d.column or "", _clean(d.value), _clean(d.reason)]
            for d in discards]
    stage(cur, "_mp_discards", columns, types, rows)
    cols = ", ".join(columns)
    cur.execute(trusted_sql(
        f"INSERT INTO {quote(schema)}.{quote(table)} ({cols}) "
        f"SELECT DISTINCT ON (seq, table_name, column_name, reason) {cols} FROM _mp_discards "
        "ON CONFLICT DO NOTHING"
    ))


def _clean(text: str | None) -> str | None:
    """Discard texts quote the sender's values; PostgreSQL text cannot hold NUL or surrogates."""
    if text is None:
        return None
    text = text.replace("\x00", "\\u0000")
    return text.encode("utf-8", "backslashreplace").decode("utf-8") if not text.isascii() else text
