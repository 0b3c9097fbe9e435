"""``users`` and ``accounts``: the newest value of every trait, whatever the arrival order.

Why not "last arrival wins" like Segment's and RudderStack's upsert: a backfill or a replay
delivers old identifies after new ones, and an arrival-order upsert then overwrites newer traits
with older ones. millpond's profile store (:mod:`millpond.profiles`) already settled the
rule, and this table follows it so the warehouse and the profile API agree:

- **trait time**: ``traits._timestamp`` when it parses, else the event's ``timestamp``
  (:func:`millpond.profiles.updates.to_update`, built on :mod:`millpond.profiles.timestamps`);
- **per trait, later wins; ties by greater messageId** (compared by code point, hence
  ``COLLATE "C"``), then greater ``seq`` (the profile store compares the value's JSON before
  ``seq``; both only matter when two events share a messageId);
- **null clears**: a winning ``null`` empties the column, and its time stays recorded, so an
  older value arriving later does not bring the trait back.

How: ``millpond_trait_times`` keeps (table, key, column) -> (time, messageId, seq) of the value
each cell holds. A batch is first reduced in Python to its winner per cell (:mod:`.plan`); then
one statement upserts those times with ``WHERE (new) > (stored)`` and ``RETURNING`` the cells
that won, and the same statement updates exactly those cells of the target table. A cell whose
stored time is newer keeps its value; re-running a batch wins nothing and changes nothing (not
even ``uuid_ts``). The state is a join (a max per cell), so any order and any split into batches
ends the same.

Flattening applies per column: ``address: {"street": ...}`` sets ``address_street``; a later
``address: null`` clears the column ``address`` only (columns are the unit of resolution).
"""

from __future__ import annotations

import psycopg

from millpond.warehouses.naming import quote, trusted_sql
from millpond.warehouses.postgres.plan import TraitLoad
from millpond.warehouses.postgres.staging import stage
from millpond.warehouses.types import ColumnType

__all__ = ["merge", "times_table_sql"]

_TIME_COLUMNS = ["id", "column_name", "t", "mid", "seq"]
_TIME_TYPES = [ColumnType.TEXT, ColumnType.TEXT, ColumnType.DOUBLE, ColumnType.TEXT,
               ColumnType.BIGINT]


def times_table_sql(schema: str, table: str) -> str:
    """``millpond_trait_times``: the time of the value in each users/accounts cell."""
    return (
        f"CREATE TABLE IF NOT EXISTS {quote(schema)}.{quote(table)} ("
        "table_name text NOT NULL, id text NOT NULL, column_name text NOT NULL, "
        't double precision NOT NULL, mid text COLLATE "C" NOT NULL, seq bigint NOT NULL, '
        "PRIMARY KEY (table_name, id, column_name))"
    )


def stage_rows(cur: psycopg.Cursor, load: TraitLoad, n: int) -> tuple[str, str]:
    """Stage the batch's winners and their times; returns the two temporary tables."""
    rows_table = f"_mp_traits_{n}"
    times_table = f"_mp_times_{n}"
    columns = ["id", "received_at", *load.columns]
    types = [ColumnType.TEXT, ColumnType.TIMESTAMP, *load.types]
    stage(cur, rows_table, columns, types, load.rows)
    stage(cur, times_table, _TIME_COLUMNS, _TIME_TYPES, [list(t) for t in load.times])
    return rows_table, times_table


def merge_statements(schema: str, load: TraitLoad, times_table: str, staged: tuple[str, str]
                     ) -> list[tuple[str, list]]:
    """The two statements of the merge; the second one's row count is the rows changed.

    Statements only, no COPY, so the caller may send them in pipeline mode and build the next
    table while the server runs them.
    """
    stage_rows, stage_times = staged
    target = f"{quote(schema)}.{quote(load.name)}"
    times = f"{quote(schema)}.{quote(times_table)}"
    sets = [
        f"{quote(c)} = CASE WHEN %s = ANY(won.cols) THEN s.{quote(c)} ELSE u.{quote(c)} END"
        for c in load.columns
    ]
    sets.append("received_at = GREATEST(u.received_at, s.received_at)")
    sets.append("uuid_ts = now()")
    ensure_rows = (f"INSERT INTO {target} (id) SELECT id FROM {quote(stage_rows)} "
                   "ON CONFLICT (id) DO NOTHING", [])
    update = (
        f"""
        WITH upserted AS (
            INSERT INTO {times} AS tt (table_name, id, column_name, t, mid, seq)
            SELECT %s, id, column_name, t, mid, seq FROM {quote(stage_times)}
            ON CONFLICT (table_name, id, column_name) DO UPDATE
               SET t = excluded.t, mid = excluded.mid, seq = excluded.seq
             WHERE (excluded.t, excluded.mid, excluded.seq) > (tt.t, tt.mid, tt.seq)
            RETURNING tt.id, tt.column_name
        ), won AS (
            SELECT id, array_agg(column_name) AS cols FROM upserted GROUP BY id
        )
        UPDATE {target} u SET {", ".join(sets)}
        FROM {quote(stage_rows)} s LEFT JOIN won ON won.id = s.id
        WHERE u.id = s.id AND (
            won.id IS NOT NULL
            OR u.received_at IS DISTINCT FROM GREATEST(u.received_at, s.received_at))
        """,
        [load.name, *load.columns],
    )
    return [ensure_rows, update]


def merge(cur: psycopg.Cursor, schema: str, load: TraitLoad, times_table: str, n: int) -> int:
    """Merge one batch into ``load.name`` and wait; returns how many rows changed."""
    if not load.rows:
        return 0
    staged = stage_rows(cur, load, n)
    for sql, params in merge_statements(schema, load, times_table, staged):
        cur.execute(trusted_sql(sql), params or None)
    return max(cur.rowcount, 0)
