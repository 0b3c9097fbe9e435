"""The event index on PostgreSQL, over the log on JetStream
(:class:`~millpond.storage.contracts.EventIndex`).

The rows (seq, source, type, name, user, anonymous id, event time, arrival) are written by
the log itself, with its dedupe keys, before an append returns (``dedupe.py``): every
acknowledged event has one. The bodies stay in the stream: a chunk, a query or a page is
answered here as seqs in order, and their bodies are fetched from the stream by
:meth:`~millpond.storage.nats.log.JetStreamEventLog.fetch` (batches over runs of nearby
seqs, concurrently).

Why a row without a body is skipped, not an error: retention and erasure delete from the
stream first and from the index after (so a crash between leaves a row, never a message
nobody can find); until then the row points at nothing. A chunk or page short of such
rows reads on past them, so callers still get full pages.

Why the per-person look-ups need no follower (the embedded store builds its per-person
index off the append path): the rows are indexed by ``user_id`` and, for events without
one, by ``anonymous_id`` (partial indexes), written with the append, so a page is two
index ranges and is current as of the call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any, LiteralString

from millpond.storage.columns import window_start
from millpond.storage.models import EventQuery, StoredEvent, Window, WindowCursor
from millpond.storage.postgres.connection import PgState
from millpond.storage.postgres.dedupe import INDEX_SCHEMA

__all__ = ["PgEventIndex"]

#: Fetches the bodies of seqs from the log (those still stored), given each seq's event
#: time as well (the archive tier picks row groups by it).
Fetch = Callable[[Sequence[int], Sequence[int]], Awaitable[dict[int, StoredEvent]]]

_WINDOW = (
    " ts < %(to)s AND (%(max)s::bigint IS NULL OR seq <= %(max)s)"
    " AND (%(src)s::text[] IS NULL OR source_id = ANY(%(src)s))"
)
_PERSON = (
    "SELECT seq, ts FROM ((SELECT seq, ts FROM events WHERE user_id = ANY(%(ids)s)"
    " AND (ts, seq) < (%(ts)s, %(seq)s) ORDER BY ts DESC, seq DESC LIMIT %(n)s)"
    " UNION ALL (SELECT seq, ts FROM events WHERE user_id IS NULL"
    " AND anonymous_id = ANY(%(ids)s) AND (ts, seq) < (%(ts)s, %(seq)s)"
    " ORDER BY ts DESC, seq DESC LIMIT %(n)s)) AS mine ORDER BY ts DESC, seq DESC"
    " LIMIT %(n)s"
)
#: Above any event time: "no cursor" for a newest-first page.
_NO_TS = 1 << 62


class PgEventIndex:
    """:class:`~millpond.storage.contracts.EventIndex`; see the module docstring."""

    def __init__(self, db: PgState, fetch: Fetch):
        self._db = db
        self._fetch = fetch
        db.create_tables(INDEX_SCHEMA)

    def time_span_after(self, seq: int) -> tuple[int | None, int | None]:
        """The least and greatest event time of the indexed seqs after ``seq`` (the
        unarchived ones: ``storage status``'s hot tier); Nones when there are none."""
        row = self._db.execute("SELECT MIN(ts) AS lo, MAX(ts) AS hi FROM events"
                               " WHERE seq > %s", (seq,)).fetchone()
        return (None, None) if row is None else (row["lo"], row["hi"])

    async def _seqs(self, query: LiteralString, params: dict[str, Any]) -> list[tuple[int, int]]:
        def run() -> list[tuple[int, int]]:
            return [(r["seq"], r["ts"]) for r in self._db.execute(query, params)]

        return await asyncio.to_thread(run)

    async def _bodies(self, rows: Sequence[tuple[int, int]]) -> list[StoredEvent]:
        """The stored events of ``rows`` (seq, ts), in their order; gone ones left out."""
        found = await self._fetch([seq for seq, _ in rows], [ts for _, ts in rows])
        return [found[seq] for seq, _ in rows if seq in found]

    # -- windows -------------------------------------------------------------------------
    def scan(self, window: Window, *, after: WindowCursor | None = None,
             chunk: int = 2000) -> AsyncGenerator[list[StoredEvent]]:
        return self._scan(window, after, chunk)

    async def _scan(self, window: Window, after: WindowCursor | None,
                    chunk: int) -> AsyncGenerator[list[StoredEvent]]:
        if window.source_ids is not None and not window.source_ids:
            return
        ts, seq = window_start(window.ts_from, after)
        while True:
            rows = await self._seqs(
                "SELECT seq, ts FROM events WHERE (ts, seq) > (%(ts)s, %(seq)s) AND"
                + _WINDOW + " ORDER BY ts, seq LIMIT %(n)s",
                {**_window(window), "ts": ts, "seq": seq, "n": chunk})
            if not rows:
                return
            seq, ts = rows[-1]
            events = await self._bodies(rows)
            if events:
                yield events
            if len(rows) < chunk:
                return

    async def count(self, window: Window) -> int:
        if window.source_ids is not None and not window.source_ids:
            return 0

        def run() -> int:
            row = self._db.execute("SELECT COUNT(*) AS n FROM events WHERE ts >= %(from)s AND"
                                   + _WINDOW, {**_window(window), "from": window.ts_from}
                                   ).fetchone()
            return 0 if row is None else int(row["n"])

        return await asyncio.to_thread(run)

    def part_scanner(self) -> None:
        return None

    # -- queries -------------------------------------------------------------------------
    async def query(self, q: EventQuery) -> list[StoredEvent]:
        params: dict[str, Any] = {
            "src": q.source_ids or None, "types": q.types or None, "name": q.event_name,
            "user": q.user_id, "ts_from": q.ts_from, "ts_to": q.ts_to,
            "r_from": q.received_from, "r_to": q.received_to, "before": q.before_seq,
            "n": q.limit}
        where = (
            " (%(src)s::text[] IS NULL OR source_id = ANY(%(src)s))"
            " AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s))"
            " AND (%(name)s::text IS NULL OR event = %(name)s)"
            " AND (%(user)s::text IS NULL OR user_id = %(user)s)"
            " AND (%(ts_from)s::bigint IS NULL OR ts >= %(ts_from)s)"
            " AND (%(ts_to)s::bigint IS NULL OR ts < %(ts_to)s)"
            " AND (%(r_from)s::bigint IS NULL OR received >= %(r_from)s)"
            " AND (%(r_to)s::bigint IS NULL OR received < %(r_to)s)"
        )
        if q.descending:
            query: LiteralString = (
                "SELECT seq, ts FROM events WHERE" + where
                + " AND seq < %(at)s AND (%(after)s::bigint IS NULL OR seq > %(after)s)"
                " ORDER BY seq DESC LIMIT %(n)s")
            at = q.before_seq if q.before_seq is not None else _NO_TS
        else:
            query = ("SELECT seq, ts FROM events WHERE" + where
                     + " AND seq > %(at)s AND (%(before)s::bigint IS NULL OR seq < %(before)s)"
                     " ORDER BY seq LIMIT %(n)s")
            at = q.after_seq if q.after_seq is not None else 0
        params["after"] = q.after_seq
        out: list[StoredEvent] = []
        while len(out) < q.limit:
            want = q.limit - len(out)
            rows = await self._seqs(query, {**params, "at": at, "n": want})
            out += await self._bodies(rows)
            if len(rows) < want:
                break
            at = rows[-1][0]
        return out

    # -- a person's events -----------------------------------------------------------------
    async def person_events(self, ids: Sequence[str], *, before: WindowCursor | None = None,
                            limit: int = 50) -> list[StoredEvent]:
        if not ids or limit <= 0:
            return []
        ts, seq = (before.ts, before.seq) if before is not None else (_NO_TS, 0)
        out: list[StoredEvent] = []
        while len(out) < limit:
            want = limit - len(out)
            rows = await self._seqs(_PERSON, {"ids": list(ids), "ts": ts, "seq": seq,
                                              "n": want})
            if not rows:
                break
            out += await self._bodies(rows)
            if len(rows) < want:
                break
            seq, ts = rows[-1]
        return out

    async def count_person_events(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0

        def run() -> int:
            row = self._db.execute(
                "SELECT (SELECT COUNT(*) FROM events WHERE user_id = ANY(%(ids)s))"
                " + (SELECT COUNT(*) FROM events WHERE user_id IS NULL"
                " AND anonymous_id = ANY(%(ids)s)) AS n", {"ids": list(ids)}).fetchone()
            return 0 if row is None else int(row["n"])

        return await asyncio.to_thread(run)


def _window(window: Window) -> dict[str, Any]:
    return {"to": window.ts_to, "max": window.max_seq,
            "src": None if window.source_ids is None else list(window.source_ids)}
