"""What the event index costs an append on the cluster backend:
``.venv/bin/python bench/cluster_index.py [--events 20000] [--runs 5] [--batch 100]``.

Each append on the JetStream log writes its events to PostgreSQL before it returns. This
measures that write alone, on the local cluster's PostgreSQL, in one run, alternating:
- (a) the dedupe keys only (what an append wrote before the index existed: one
  ``INSERT … unnest`` of (source, messageId, seq));
- (b) the dedupe keys and the index rows in one statement, as the log writes them now
  (``storage/postgres/dedupe.py:PgDedupeTable.record``);
each on a fresh schema, ``--batch`` events per statement, one statement at a time (as one
append does), and prints the medians of ``--runs`` runs and the ratio b/a.

Why alone: the whole append path (``bench/cluster.py``) on this 2-core machine moves
±30% between runs with the other helpers' load; the statement's own cost is steadier, and
it is the part the index adds (the publisher's extra work, an index header per message,
is ~1 us per event).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_quick_option, median, realistic_event  # noqa: E402

from millpond.collector.validation import normalize  # noqa: E402
from millpond.devcluster import DevCluster  # noqa: E402
from millpond.storage.models import NewEvent  # noqa: E402
from millpond.storage.postgres import PgDedupeTable  # noqa: E402

_KEYS_ONLY = (
    "INSERT INTO dedupe (source_id, message_id, seq) SELECT * FROM"
    " unnest(%s::text[], %s::text[], %s::bigint[]) ON CONFLICT DO NOTHING"
)


def make_events(n: int, run: str) -> list[NewEvent]:
    now = int(time.time() * 1000)
    return [normalize(realistic_event(i, f"{run}-{i}"), source_id="src_bench", received_ms=now)
            for i in range(n)]


async def keys_only(dsn: str, schema: str, events: list[NewEvent], batch: int) -> float:
    table = PgDedupeTable(dsn, schema=schema)  # creates the tables
    await table.set_mark(0)
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True,
                                                 options=f"-c search_path={schema}")
    try:
        started = time.perf_counter()
        for i in range(0, len(events), batch):
            part = events[i:i + batch]
            await conn.execute(_KEYS_ONLY, ([e.source_id for e in part],
                                            [e.message_id for e in part],
                                            list(range(i + 1, i + 1 + len(part)))))
        return len(events) / (time.perf_counter() - started)
    finally:
        await conn.close()
        await table.close()


async def with_index(dsn: str, schema: str, events: list[NewEvent], batch: int) -> float:
    table = PgDedupeTable(dsn, schema=schema)
    await table.set_mark(0)
    try:
        started = time.perf_counter()
        for i in range(0, len(events), batch):
            part = events[i:i + batch]
            await table.record([(i + 1 + j, e.source_id, e.message_id, e.type, e.event_name,
                                 e.user_id, e.anonymous_id, e.ts_ms, e.received_ms)
                                for j, e in enumerate(part)])
        return len(events) / (time.perf_counter() - started)
    finally:
        await table.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=100)
    add_quick_option(parser)
    args = parser.parse_args()
    if args.quick:
        args.events, args.runs = 1_000, 1
    rates: dict[str, list[float]] = {"a": [], "b": []}
    engines = DevCluster().start()
    dsn = engines.postgres.dsn()
    schemas: list[str] = []
    try:
        for run in range(args.runs):
            events = make_events(args.events, f"r{run}-{uuid.uuid4().hex[:6]}")
            for key, work in (("a", keys_only), ("b", with_index))[::1 if run % 2 else -1]:
                schema = f"bench{uuid.uuid4().hex[:10]}"
                schemas.append(schema)
                rates[key].append(asyncio.run(work(dsn, schema, events, args.batch)))
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for schema in schemas:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")  # type: ignore[arg-type]
        engines.stop()
    a, b = median(rates["a"]), median(rates["b"])
    print(f"{args.events} events, {args.batch} per statement, median of {args.runs} runs "
          "(alternating which goes first)")
    print(f"(a) dedupe keys only                 {a:>10,.0f} events/s")
    print(f"(b) dedupe keys + index rows         {b:>10,.0f} events/s")
    print(f"ratio b/a (what the index costs)     {b / a:>10.2f}")


if __name__ == "__main__":
    main()
