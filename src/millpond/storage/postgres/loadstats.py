"""Per-table load totals of warehouse and storage destinations on PostgreSQL.

As on the embedded store (``storage/sqlite/loadstats.py``): one upsert per table, all in
one transaction, so a load's counts land together, and the server adds the deltas itself
(``rows = load_stats.rows + excluded.rows``), so two processes loading at once both count.
"""

from __future__ import annotations

from collections.abc import Mapping

from millpond.storage.models import TableLoadStats
from millpond.storage.postgres.connection import PgState

SCHEMA = """
CREATE TABLE IF NOT EXISTS load_stats (
    destination_id TEXT NOT NULL,
    table_name TEXT NOT NULL,
    rows BIGINT NOT NULL DEFAULT 0,
    discards BIGINT NOT NULL DEFAULT 0,
    last_load DOUBLE PRECISION,
    PRIMARY KEY (destination_id, table_name)
);
"""

_ADD = (
    "INSERT INTO load_stats (destination_id, table_name, rows, discards, last_load)"
    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (destination_id, table_name) DO UPDATE SET"
    " rows = load_stats.rows + excluded.rows,"
    " discards = load_stats.discards + excluded.discards, last_load = excluded.last_load"
)


class PgLoadStatsStore:
    """:class:`~millpond.storage.contracts.LoadStatsStore` on PostgreSQL."""

    def __init__(self, db: PgState):
        self._db = db
        db.create_tables(SCHEMA)

    def add(self, destination_id: str, tables: Mapping[str, tuple[int, int]],
            at: float) -> None:
        if not tables:
            return
        with self._db.transaction() as conn, conn.cursor() as cur:
            cur.executemany(_ADD, [(destination_id, name, rows, discards, at)
                                   for name, (rows, discards) in sorted(tables.items())])

    def get(self, destination_id: str) -> dict[str, TableLoadStats]:
        rows = self._db.execute(
            "SELECT table_name, rows, discards, last_load FROM load_stats"
            " WHERE destination_id = %s ORDER BY table_name", (destination_id,))
        return {r["table_name"]: TableLoadStats(r["rows"], r["discards"], r["last_load"])
                for r in rows}

    def forget(self, destination_id: str) -> None:
        self._db.execute("DELETE FROM load_stats WHERE destination_id = %s",
                         (destination_id,))
