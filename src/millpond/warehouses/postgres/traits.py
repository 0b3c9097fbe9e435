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

How: each row keeps the time of every cell's value in its own ``millpond_trait_times`` column,
a JSON object ``{column: [time, messageId, seq]}`` (traits only ever null included, though they
have no column). A batch is first reduced in Python to one row per key holding its winner per
cell and their times (:func:`.plan.trait_load`); then one ``INSERT ... ON CONFLICT (id) DO
UPDATE`` inserts the keys new to the table as they are, and for a key already there sets each
cell to the batch's value only where the batch's time is greater than the stored one, merging
the times the same way. A row where nothing wins is not written at all (``DO UPDATE ... WHERE``),
so re-running a batch changes nothing, not even ``uuid_ts``. The state is a join (a max per
cell), so any order and any split into batches ends the same.

Why the times live on the row: they were a table of their own with one row per (key, trait),
and upserting those rows (an index entry and a WAL record each, three or more per user) cost
PostgreSQL several times what writing the ``users`` rows did; the bench showed it as most of
the server time a load spent beyond a raw ``COPY``. On the row, a first sync writes each user
once, and a later batch touches one row per user it names, found through the primary key.
Destinations made by older versions are converted when a batch first sees them
(:func:`convert_times_table`).

Flattening applies per column: ``address: {"street": ...}`` sets ``address_street``; a later
``address: null`` clears the column ``address`` only (columns are the unit of resolution).
"""

from __future__ import annotations

import psycopg

from millpond.warehouses.naming import quote, trusted_sql
from millpond.warehouses.postgres.plan import TraitLoad
from millpond.warehouses.postgres.staging import stage
from millpond.warehouses.schema import TRAIT_TIMES
from millpond.warehouses.types import ColumnType

__all__ = ["TIMES_COLUMN", "add_times_column", "convert_times_table", "merge",
           "merge_statement"]

#: The column of ``users`` / ``accounts`` holding the time of each cell's value.
TIMES_COLUMN = TRAIT_TIMES

_T = quote(TIMES_COLUMN)
_STORED = f"COALESCE(u.{_T}, '{{}}'::jsonb)"


def _literal(text: str) -> str:
    """A SQL string literal (``standard_conforming_strings``, on since PostgreSQL 9.1)."""
    return "'" + text.replace("'", "''") + "'"


def _rank(entry: str) -> str:
    """The row ``(time, messageId, seq)`` of a ``[time, messageId, seq]`` JSON entry."""
    return (f"ROW(({entry} ->> 0)::float8, ({entry} ->> 1) COLLATE \"C\", "
            f"({entry} ->> 2)::bigint)")


def _newer(new: str, key: str) -> str:
    """Whether the batch's entry ``new`` for key ``key`` (SQL text) beats the stored one."""
    return f"(NOT {_STORED} ? {key} OR {_rank(new)} > {_rank(f'{_STORED} -> {key}')})"


def merge_statement(schema: str, load: TraitLoad, source: str) -> str:
    """The merge of the staged rows ``source`` into ``load.name``: one statement whose rows
    say, per row written, whether it changed (``uuid_ts`` set)."""
    target = f"{quote(schema)}.{quote(load.name)}"
    cols = [quote(c) for c in load.columns]
    sets = []
    for name, col in zip(load.columns, cols, strict=True):
        key = _literal(name)
        new = f"(excluded.{_T} -> {key})"
        sets.append(f"{col} = CASE WHEN {new} IS NOT NULL AND {_newer(new, key)} "
                    f"THEN excluded.{col} ELSE u.{col} END")
    won = f"FROM jsonb_each(excluded.{_T}) AS e(k, v) WHERE {_newer('e.v', 'e.k')}"
    sets.append(f"{_T} = {_STORED} || COALESCE((SELECT jsonb_object_agg(e.k, e.v) {won}), "
                "'{}'::jsonb)")
    sets.append("received_at = GREATEST(u.received_at, excluded.received_at)")
    sets.append("uuid_ts = now()")
    listed = "".join(f", {c}" for c in cols)
    return f"""
        INSERT INTO {target} AS u (id, received_at{listed}, {_T}, uuid_ts)
        SELECT s.id, s.received_at{"".join(f", s.{c}" for c in cols)}, s.times::jsonb,
               CASE WHEN s.times <> '{{}}' OR s.received_at IS NOT NULL THEN now() END
        FROM {quote(source)} s
        ON CONFLICT (id) DO UPDATE SET {", ".join(sets)}
        WHERE EXISTS (SELECT 1 {won})
           OR u.received_at IS DISTINCT FROM GREATEST(u.received_at, excluded.received_at)
        RETURNING uuid_ts IS NOT NULL
        """


def merge(cur: psycopg.Cursor, schema: str, load: TraitLoad, n: int) -> int:
    """Merge one batch into ``load.name`` and wait; returns how many rows changed."""
    if not load.rows:
        return 0
    source = f"_mp_traits_{n}"
    columns = ["id", "received_at", "times", *load.columns]
    types = [ColumnType.TEXT, ColumnType.TIMESTAMP, ColumnType.TEXT, *load.types]
    rows = [[row[0], row[1], times, *row[2:]]
            for row, times in zip(load.rows, load.times, strict=True)]
    stage(cur, source, columns, types, rows)
    cur.execute(trusted_sql(f"WITH m(changed) AS ({merge_statement(schema, load, source)}) "
                            "SELECT count(*) FILTER (WHERE changed) FROM m"))
    row = cur.fetchone()
    return int(row[0]) if row else 0


def add_times_column(cur: psycopg.Cursor, schema: str, table: str) -> None:
    """Give ``users`` / ``accounts`` (new, or made by an older version) the times column."""
    cur.execute(trusted_sql(f"ALTER TABLE {quote(schema)}.{quote(table)} "
                            f"ADD COLUMN IF NOT EXISTS {_T} jsonb"))


def convert_times_table(cur: psycopg.Cursor, schema: str, old: str, tables: list[str]) -> None:
    """Move the times of an older version's ``millpond_trait_times`` table (one row per
    (table, key, column)) onto the rows of ``tables`` (those that exist), then drop it.

    Runs in the batch's transaction, so a failed batch leaves the old layout as it was. Times
    of keys with no row left (deleted by a regulation: :meth:`.loader.PostgresLoader.forget`
    kept them) go with the table: a deleted person keeps nothing. The floats are printed in
    their shortest exact form (``extra_float_digits`` > 0), so the converted times compare
    exactly as the old ones did.
    """
    cur.execute("SET LOCAL extra_float_digits = 1")
    source = f"{quote(schema)}.{quote(old)}"
    for table in tables:
        add_times_column(cur, schema, table)
        cur.execute(trusted_sql(
            f"UPDATE {quote(schema)}.{quote(table)} AS u SET {_T} = {_STORED} || m.times "
            f"FROM (SELECT id, jsonb_object_agg(column_name, jsonb_build_array(t, mid, seq)) "
            f"AS times FROM {source} WHERE table_name = %s GROUP BY id) AS m "
            "WHERE u.id = m.id"), (table,))
    cur.execute(trusted_sql(f"DROP TABLE {source}"))
