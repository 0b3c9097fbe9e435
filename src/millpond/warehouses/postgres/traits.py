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
that won, and the same statement inserts the rows of keys new to the target table with those
cells and updates exactly those cells of the rows already there. A cell whose
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

__all__ = ["merge", "merge_statement", "stage_rows", "times_table_sql"]

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


def merge_statement(schema: str, load: TraitLoad, times_table: str, staged: tuple[str, str]
                    ) -> tuple[str, list]:
    """The merge, one statement; its one row holds how many target rows changed.

    Keys new to the table are inserted with their winning values at once, and only keys
    already there are updated: a first sync writes each ``users`` row once, not an empty row
    and then its values. Both parts read the statement's snapshot, so the update never sees
    the rows the insert adds.
    """
    stage_rows, stage_times = staged
    target = f"{quote(schema)}.{quote(load.name)}"
    times = f"{quote(schema)}.{quote(times_table)}"
    won_value = [f"CASE WHEN %s = ANY(won.cols) THEN s.{quote(c)} END" for c in load.columns]
    sets = [
        f"{quote(c)} = CASE WHEN %s = ANY(won.cols) THEN s.{quote(c)} ELSE u.{quote(c)} END"
        for c in load.columns
    ]
    sets.append("received_at = GREATEST(u.received_at, s.received_at)")
    sets.append("uuid_ts = now()")
    cols = "".join(f", {quote(c)}" for c in load.columns)
    values = "".join(f", {v}" for v in won_value)
    sql = f"""
        WITH upserted AS (
            INSERT INTO {times} AS tt (table_name, id, column_name, t, mid, seq)
            SELECT %s, id, column_name, t, mid, seq FROM {quote(stage_times)}
            ON CONFLICT (table_name, id, column_name) DO UPDATE
               SET t = excluded.t, mid = excluded.mid, seq = excluded.seq
             WHERE (excluded.t, excluded.mid, excluded.seq) > (tt.t, tt.mid, tt.seq)
            RETURNING tt.id, tt.column_name
        ), won AS (
            SELECT id, array_agg(column_name) AS cols FROM upserted GROUP BY id
        ), added AS (
            INSERT INTO {target} (id, received_at{cols}, uuid_ts)
            SELECT s.id, s.received_at{values},
                   CASE WHEN won.id IS NOT NULL OR s.received_at IS NOT NULL THEN now() END
            FROM {quote(stage_rows)} s LEFT JOIN won ON won.id = s.id
            ON CONFLICT (id) DO NOTHING
            RETURNING uuid_ts IS NOT NULL AS changed
        ), updated AS (
            UPDATE {target} u SET {", ".join(sets)}
            FROM {quote(stage_rows)} s LEFT JOIN won ON won.id = s.id
            WHERE u.id = s.id AND (
                won.id IS NOT NULL
                OR u.received_at IS DISTINCT FROM GREATEST(u.received_at, s.received_at))
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM added WHERE changed) + (SELECT count(*) FROM updated)
        """
    return sql, [load.name, *load.columns, *load.columns]


def merge(cur: psycopg.Cursor, schema: str, load: TraitLoad, times_table: str, n: int) -> int:
    """Merge one batch into ``load.name`` and wait; returns how many rows changed."""
    if not load.rows:
        return 0
    staged = stage_rows(cur, load, n)
    sql, params = merge_statement(schema, load, times_table, staged)
    row = cur.execute(trusted_sql(sql), params).fetchone()
    return int(row[0]) if row else 0
