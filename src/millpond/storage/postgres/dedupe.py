"""The log's tables on PostgreSQL, for the log on JetStream
(:class:`millpond.storage.nats.dedupe.LogTable`): the forever dedupe table
(source, messageId) -> seq, the event index keyed by seq, the repair mark and retention's
notes.

Why one statement per append for dedupe and index: the index row must exist for every
acknowledged event, and an append is acknowledged when this returns; one ``INSERT`` into
both tables (a data-modifying ``WITH``) is one round trip and one commit, so neither can
be there without the other.

Why its own async connections: the log calls it from its event loop, once per append (one
``SELECT`` of the append's keys, one ``INSERT`` of its new rows: round trips per append,
not per event), and an async connection there needs no thread hand-off. Why
:data:`APPEND_CONNECTIONS` of them for those two statements: the log merges the look-ups
of the appends in flight into one call, and their records into another
(``storage/nats/coalesce.py``); on two connections a look-up and a record run at once
instead of one waiting for the other's commit (a WAL flush). No order is lost: the rows
are keyed by seq, and an append's look-up never depended on another's insert having run
(they are concurrent either way; the stream's ``Nats-Msg-Id`` window catches those).
The index is read by :class:`millpond.storage.postgres.index.PgEventIndex` on the state
connections.

Why ``expired`` on a dedupe row instead of deleting it: dedupe is forever, so a removed
event's key stays, and a later copy is answered as a duplicate whose first copy expired.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

import msgspec
import psycopg
from psycopg.rows import TupleRow

from millpond.storage.contracts import StorageUnavailable
from millpond.storage.models import Expired, Window, owners_of
from millpond.storage.nats.dedupe import Indexed, Key, Seen
from millpond.storage.postgres.connection import DDL_LOCK

__all__ = ["INDEX_SCHEMA", "PgDedupeTable"]

HOUR_MS = 3_600_000
#: Connections the appends' look-ups and inserts share (see above).
APPEND_CONNECTIONS = 2

INDEX_SCHEMA = """
CREATE TABLE IF NOT EXISTS dedupe (
    source_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (source_id, message_id)
);
ALTER TABLE dedupe ADD COLUMN IF NOT EXISTS expired BOOLEAN NOT NULL DEFAULT FALSE;
CREATE TABLE IF NOT EXISTS events (
    seq BIGINT PRIMARY KEY,
    source_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    type TEXT NOT NULL,
    event TEXT,
    user_id TEXT,
    anonymous_id TEXT,
    ts BIGINT NOT NULL,
    received BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_ts ON events(ts, seq);
CREATE INDEX IF NOT EXISTS events_by_arrival ON events(source_id, received);
CREATE INDEX IF NOT EXISTS events_by_user ON events(user_id, ts, seq)
    WHERE user_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_by_anonymous ON events(anonymous_id, ts, seq)
    WHERE user_id IS NULL;
CREATE TABLE IF NOT EXISTS index_mark (
    one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    seq BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS expired (
    source_id TEXT NOT NULL, hour BIGINT NOT NULL, events BIGINT NOT NULL,
    PRIMARY KEY (source_id, hour)
);
CREATE TABLE IF NOT EXISTS expired_before (
    source_id TEXT PRIMARY KEY, before_ms BIGINT NOT NULL
);
"""

_RECORD = """
WITH rows AS (
    SELECT (r->>0)::bigint AS seq, r->>1 AS source_id, r->>2 AS message_id, r->>3 AS type,
           r->>4 AS event, r->>5 AS user_id, r->>6 AS anonymous_id, (r->>7)::bigint AS ts,
           (r->>8)::bigint AS received
    FROM json_array_elements(%s::json) AS r
), keys AS (
    INSERT INTO dedupe (source_id, message_id, seq)
    SELECT source_id, message_id, seq FROM rows ON CONFLICT DO NOTHING
)
INSERT INTO events (seq, source_id, message_id, type, event, user_id, anonymous_id, ts,
                    received)
SELECT * FROM rows ON CONFLICT DO NOTHING
"""

Conn = psycopg.AsyncConnection[TupleRow]
#: An append's keys and rows travel as one JSON text parameter, unpacked by the server:
#: psycopg adapts a list parameter element by element in Python (~5 us each; 45 us per
#: event for the nine columns of an index row), msgspec encodes the lot in ~0.4 us/event.
_encode = msgspec.json.Encoder().encode


class PgDedupeTable:
    """:class:`~millpond.storage.nats.dedupe.LogTable` in ``schema``."""

    def __init__(self, dsn: str, schema: str = "millpond", connect_timeout: int = 5):
        self._dsn, self._schema, self._timeout = dsn, schema, connect_timeout
        self._conn: Conn | None = None
        self._connecting: asyncio.Lock | None = None
        self._idle: list[Conn] = []  # the appends' connections not in use
        self._slots: asyncio.Semaphore | None = None

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
            async with conn.transaction():
                # with every other process's schema changes, one at a time (the state's
                # index store creates these same tables: two processes starting on a
                # fresh place collided, "duplicate key … (typname, typnamespace)")
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK,))
                await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self._schema}")  # type: ignore[arg-type]
                await conn.execute(INDEX_SCHEMA)
        except psycopg.OperationalError as exc:
            raise StorageUnavailable(
                f"cannot reach PostgreSQL: {str(exc).strip().splitlines()[0]}") from exc
        self._conn = conn
        return conn

    async def _lost(self, exc: Exception) -> StorageUnavailable:
        idle, self._idle = self._idle, []  # from the same server: gone too
        for conn in idle:
            await conn.close()
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
        return StorageUnavailable(
            f"lost the connection to PostgreSQL: {str(exc).strip().splitlines()[0]}")

    async def _rows(self, query: str, params: object = None) -> list[TupleRow]:
        conn = await self._connection()
        try:
            cur = await conn.execute(query, params)  # type: ignore[arg-type]
            return await cur.fetchall() if cur.description else []
        except psycopg.OperationalError as exc:
            raise await self._lost(exc) from exc

    async def _append_rows(self, query: str, params: object) -> list[TupleRow]:
        """``_rows`` on one of the appends' connections (opened as needed, at most
        :data:`APPEND_CONNECTIONS`; one that fails is closed, not reused)."""
        await self._connection()  # the tables exist before the first append
        if self._slots is None:  # made here: it belongs to the loop it is used on
            self._slots = asyncio.Semaphore(APPEND_CONNECTIONS)
        async with self._slots:
            try:
                conn = self._idle.pop() if self._idle else await Conn.connect(
                    self._dsn, autocommit=True, connect_timeout=self._timeout,
                    options=f"-c search_path={self._schema}")
            except psycopg.OperationalError as exc:
                raise StorageUnavailable(
                    f"cannot reach PostgreSQL: {str(exc).strip().splitlines()[0]}") from exc
            try:
                cur = await conn.execute(query, params)  # type: ignore[arg-type]
                rows = await cur.fetchall() if cur.description else []
            except psycopg.OperationalError as exc:
                await conn.close()
                raise await self._lost(exc) from exc
            except BaseException:
                await conn.close()
                raise
            self._idle.append(conn)
            return rows

    async def seen(self, keys: Sequence[Key]) -> dict[Key, Seen]:
        if not keys:
            return {}
        rows = await self._append_rows(
            "SELECT d.source_id, d.message_id, d.seq, d.expired FROM dedupe d JOIN"
            " (SELECT k->>0 AS source_id, k->>1 AS message_id"
            " FROM json_array_elements(%s::json) AS k) AS k USING (source_id, message_id)",
            (_encode(keys).decode(),))
        return {(str(s), str(m)): Seen(int(q), bool(x)) for s, m, q, x in rows}

    async def record(self, rows: Sequence[Indexed]) -> None:
        if not rows:
            return
        await self._append_rows(_RECORD, (_encode(rows).decode(),))

    async def find(self, source_id: str, message_id: str) -> int | None:
        found = (await self.seen([(source_id, message_id)])).get((source_id, message_id))
        return None if found is None or found.expired else found.seq

    async def unindexed(self, upto: int) -> tuple[int, list[int]]:
        rows = await self._rows("SELECT seq FROM index_mark")
        mark = int(rows[0][0]) if rows else 0
        if upto <= mark:
            return mark, []
        missing = await self._rows(
            "SELECT s FROM generate_series(%s::bigint + 1, %s::bigint) AS s"
            " WHERE NOT EXISTS (SELECT 1 FROM events WHERE seq = s)", (mark, upto))
        return mark, [int(r[0]) for r in missing]

    async def set_mark(self, seq: int) -> None:
        await self._rows("INSERT INTO index_mark (seq) VALUES (%s) ON CONFLICT (one)"
                         " DO UPDATE SET seq = GREATEST(index_mark.seq, excluded.seq)", (seq,))

    async def expirable(self, source_id: str, before_ms: int, limit: int) -> list[int]:
        rows = await self._rows("SELECT seq FROM events WHERE source_id = %s AND received < %s"
                                " ORDER BY seq LIMIT %s", (source_id, before_ms, limit))
        return [int(r[0]) for r in rows]

    async def forget_expired(self, source_id: str, before_ms: int,
                             seqs: Sequence[int]) -> dict[str, bool]:
        conn = await self._connection()
        try:
            async with conn.transaction():
                cur = await conn.execute("DELETE FROM events WHERE seq = ANY(%s)"
                                         " RETURNING message_id, ts, user_id, anonymous_id",
                                         (list(seqs),))
                gone = await cur.fetchall()
                await conn.execute("UPDATE dedupe SET expired = TRUE WHERE source_id = %s"
                                   " AND message_id = ANY(%s)",
                                   (source_id, [r[0] for r in gone]))
                hours = Counter(int(r[1]) // HOUR_MS for r in gone)
                if hours:
                    await conn.execute(
                        "INSERT INTO expired (source_id, hour, events) SELECT %s, h, n FROM"
                        " unnest(%s::bigint[], %s::bigint[]) AS x(h, n)"
                        " ON CONFLICT (source_id, hour)"
                        " DO UPDATE SET events = expired.events + excluded.events",
                        (source_id, list(hours), list(hours.values())))
                await conn.execute(
                    "INSERT INTO expired_before (source_id, before_ms) VALUES (%s, %s)"
                    " ON CONFLICT (source_id) DO UPDATE"
                    " SET before_ms = GREATEST(expired_before.before_ms, excluded.before_ms)",
                    (source_id, before_ms))
        except psycopg.OperationalError as exc:
            raise await self._lost(exc) from exc
        return owners_of((r[2], r[3]) for r in gone)

    async def expired(self, window: Window) -> list[Expired]:
        rows = await self._rows(
            "SELECT e.source_id, SUM(e.events), b.before_ms FROM expired e"
            " JOIN expired_before b ON b.source_id = e.source_id"
            " WHERE e.hour >= %(lo)s AND e.hour <= %(hi)s"
            " AND (%(s)s::text[] IS NULL OR e.source_id = ANY(%(s)s))"
            " GROUP BY e.source_id, b.before_ms ORDER BY e.source_id",
            {"lo": window.ts_from // HOUR_MS, "hi": (window.ts_to - 1) // HOUR_MS,
             "s": None if window.source_ids is None else list(window.source_ids)})
        return [Expired(str(s), int(n), int(b)) for s, n, b in rows]

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
