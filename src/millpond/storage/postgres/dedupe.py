"""The forever dedupe table on PostgreSQL: (source, messageId) -> seq, for the log on
JetStream (:class:`millpond.storage.nats.dedupe.DedupeTable`).

Why its own async connection: the log calls it from its event loop, once per append (one
``SELECT`` of the append's keys, one ``INSERT`` of its new rows: round trips per append,
not per event), and an async connection there needs no thread hand-off.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import psycopg
from psycopg.rows import TupleRow

from millpond.storage.contracts import StorageUnavailable
from millpond.storage.nats.dedupe import Key

__all__ = ["PgDedupeTable"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS dedupe (
    source_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (source_id, message_id)
);
"""

Conn = psycopg.AsyncConnection[TupleRow]


class PgDedupeTable:
    """:class:`~millpond.storage.nats.dedupe.DedupeTable` in ``schema``."""

    def __init__(self, dsn: str, schema: str = "millpond", connect_timeout: int = 5):
        self._dsn, self._schema, self._timeout = dsn, schema, connect_timeout
        self._conn: Conn | None = None
        self._connecting: asyncio.Lock | None = None

    async def _connection(self) -> Conn:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        if self._connecting is None:  # made here: a Lock belongs to the loop it is used on
            self._connecting = asyncio.Lock()
        async with self._connecting:  # concurrent appends share one connection
            if self._conn is not None and not self._conn.closed:
                return self._conn
            return await self._connect()

    async def _connect(self) -> Conn:
        try:
            conn = await Conn.connect(self._dsn, autocommit=True,
                                      connect_timeout=self._timeout,
                                      options=f"-c search_path={self._schema}")
            await conn.execute(SCHEMA)
        except psycopg.OperationalError as exc:
            raise StorageUnavailable(
                f"cannot reach PostgreSQL: {str(exc).strip().splitlines()[0]}") from exc
        self._conn = conn
        return conn

    async def _lost(self, exc: Exception) -> StorageUnavailable:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
        return StorageUnavailable(
            f"lost the connection to PostgreSQL: {str(exc).strip().splitlines()[0]}")

    async def seen(self, keys: Sequence[Key]) -> dict[Key, int]:
        if not keys:
            return {}
        conn = await self._connection()
        try:
            cur = await conn.execute(
                "SELECT d.source_id, d.message_id, d.seq FROM dedupe d JOIN"
                " unnest(%s::text[], %s::text[]) AS k(source_id, message_id)"
                " USING (source_id, message_id)",
                ([k[0] for k in keys], [k[1] for k in keys]))
            rows = await cur.fetchall()
        except psycopg.OperationalError as exc:
            raise await self._lost(exc) from exc
        return {(str(s), str(m)): int(q) for s, m, q in rows}

    async def record(self, rows: Sequence[tuple[str, str, int]]) -> None:
        if not rows:
            return
        conn = await self._connection()
        try:
            await conn.execute(
                "INSERT INTO dedupe (source_id, message_id, seq) SELECT * FROM"
                " unnest(%s::text[], %s::text[], %s::bigint[]) ON CONFLICT DO NOTHING",
                ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]))
        except psycopg.OperationalError as exc:
            raise await self._lost(exc) from exc

    async def find(self, source_id: str, message_id: str) -> int | None:
        return (await self.seen([(source_id, message_id)])).get((source_id, message_id))

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
