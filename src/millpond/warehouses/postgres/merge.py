"""One transaction per batch: ``COPY`` into temporary tables, then merge keyed by ``id``.

Why this shape:

- ``COPY ... FROM STDIN (FORMAT BINARY)`` is PostgreSQL's fastest way in; binary because the
  values are already typed Python objects (:mod:`.plan`), so nothing is formatted as text and
  parsed back. Temporary tables are not WAL-logged and have no index, so staging is cheap.
- ``INSERT ... SELECT ... ON CONFLICT (id) DO NOTHING`` makes a batch idempotent: running it
  again (after a crash between the commit and the caller's checkpoint) inserts nothing. The
  rows are identical anyway, since a stored event never changes; ``DO NOTHING`` also keeps
  ``uuid_ts`` (the load time) of the first load.
- All tables of a batch, its discards and its ``users`` / ``accounts`` changes commit together
  or not at all, so a connection lost mid-batch leaves nothing half-applied.
- An ``id`` already in the table from a *different* stored event (two sources reusing a
  messageId) is not silently skipped: it becomes a discard naming the event that holds the id.
  That check only runs when the insert skipped rows, so a first load pays nothing for it.

``users`` / ``accounts`` are merged by :mod:`.traits`, in the same transaction.
"""

from __future__ import annotations

import psycopg

from millpond.warehouses.batch import Discard
from millpond.warehouses.naming import quote
from millpond.warehouses.postgres import traits
from millpond.warehouses.postgres.plan import Plan, TableLoad
from millpond.warehouses.postgres.staging import stage
from millpond.warehouses.types import ColumnType

__all__ = ["discards_table_sql", "run"]

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


def _merge_table(cur: psycopg.Cursor, schema: str, load: TableLoad, stage_name: str,
                 discards: list[Discard]) -> int:
    stage(cur, stage_name, load.columns, load.types, load.rows)
    target = f"{quote(schema)}.{quote(load.name)}"
    cols = ", ".join(quote(c) for c in load.columns)
    cur.execute(
        f"INSERT INTO {target} ({cols}, uuid_ts) SELECT {cols}, now() FROM {quote(stage_name)} "
        "ON CONFLICT (id) DO NOTHING"
    )
    inserted = max(cur.rowcount, 0)
    if inserted < len(load.rows):
        # Skipped rows are either this batch loaded before (same seq: fine) or another event
        # holding the id (a messageId reused by another source): report those.
        cur.execute(
            f"SELECT s.millpond_seq, s.id, t.millpond_seq, t.millpond_source_id "
            f"FROM {quote(stage_name)} s JOIN {target} t ON t.id = s.id "
            "WHERE t.millpond_seq IS DISTINCT FROM s.millpond_seq"
        )
        for seq, message_id, other_seq, other_source in cur.fetchall():
            discards.append(Discard(
                seq, message_id, load.name, None, None,
                f"id {message_id!r} is already in {load.name}, loaded from seq {other_seq} "
                f"(source {other_source}); a messageId is loaded once per table"))
    return inserted


def _write_discards(cur: psycopg.Cursor, schema: str, table: str,
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
    cur.execute(
        f"INSERT INTO {quote(schema)}.{quote(table)} ({cols}) "
        f"SELECT DISTINCT ON (seq, table_name, column_name, reason) {cols} FROM _mp_discards "
        "ON CONFLICT DO NOTHING"
    )


def _clean(text: str | None) -> str | None:
    """Discard texts quote the sender's values; PostgreSQL text cannot hold NUL or surrogates."""
    if text is None:
        return None
    text = text.replace("\x00", "\\u0000")
    return text.encode("utf-8", "backslashreplace").decode("utf-8") if not text.isascii() else text


def run(conn: psycopg.Connection, schema: str, plan: Plan, *, discards_table: str,
        times_table: str) -> dict[str, int]:
    """Apply ``plan`` in one transaction; returns rows new (or changed) per table.

    Discards found while merging (ids held by other events) are appended to ``plan.discards``
    and written with the others, in the same transaction.
    """
    inserted: dict[str, int] = {}
    with conn.transaction(), conn.cursor() as cur:
        for i, load in enumerate(plan.tables):
            if load.rows:
                inserted[load.name] = _merge_table(cur, schema, load, f"_mp_stage_{i}",
                                                   plan.discards)
        for i, load in enumerate(plan.traits):
            inserted[load.name] = traits.merge(cur, schema, load, times_table, i)
        _write_discards(cur, schema, discards_table, plan.discards)
    return inserted
