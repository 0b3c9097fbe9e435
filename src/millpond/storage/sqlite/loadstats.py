"""Per-table load totals of warehouse and storage destinations, in ``state.db``.

Why one upsert per table, all in one transaction: a load's counts must land together (a
reader never sees ``tracks`` counted and its event table not), and SQLite adds the deltas
itself (``rows = rows + excluded.rows``), so no read of the old totals is needed.
"""

from __future__ import annotations

from collections.abc import Mapping

from millpond.storage.models import TableLoadStats
from millpond.storage.sqlite.connection import StateDB, immediate

SCHEMA = """
CREATE TABLE IF NOT EXISTS load_stats (
    destination_id TEXT NOT NULL,
    table_name TEXT NOT NULL,
    rows INTEGER NOT NULL DEFAULT 0,
    discards INTEGER NOT NULL DEFAULT 0,
    last_load REAL,
    PRIMARY KEY (destination_id, table_name)
);
"""

_ADD = (
    "INSERT INTO load_stats (destination_id, table_name, rows, discards, last_load) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (destination_id, table_name) DO UPDATE SET "
    "rows = rows + excluded.rows, discards = discards + excluded.discards, "
    "last_load = excluded.last_load"
)


class SQLiteLoadStatsStore:
    """:class:`~millpond.storage.contracts.LoadStatsStore` in ``state.db``."""

    def __init__(self, db: StateDB):
        self._db = db
        db.executescript(SCHEMA)

    def add(self, destination_id: str, tables: Mapping[str, tuple[int, int]],
            at: float) -> None:
        if not tables:
            return
        with immediate(self._db.conn()) as conn:
            conn.executemany(_ADD, [(destination_id, name, rows, discards, at)
                                    for name, (rows, discards) in tables.items()])

    def get(self, destination_id: str) -> dict[str, TableLoadStats]:
        rows = self._db.conn().execute(
            "SELECT table_name, rows, discards, last_load FROM load_stats "
            "WHERE destination_id = ? ORDER BY table_name", (destination_id,)).fetchall()
        return {r[0]: TableLoadStats(r[1], r[2], r[3]) for r in rows}

    def forget(self, destination_id: str) -> None:
        self._db.conn().execute("DELETE FROM load_stats WHERE destination_id = ?",
                                (destination_id,))
