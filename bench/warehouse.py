"""Warehouse loaders benchmark: ``.venv/bin/python bench/warehouse.py [--events 200000]``.

Measures, in one run and on one machine, against a real PostgreSQL started for the run
(``initdb`` + ``pg_ctl`` on a free loopback port, as the tests do):

- (a) the ``postgres`` loader end to end, a first sync into empty tables: flatten by Segment's
  schema, type checks, DDL, ``COPY`` into temporary tables, one merge transaction per batch;
- (b) the baseline: a raw binary ``COPY`` of the very same rows (prepared beforehand, untimed:
  event tables, ``tracks``, and each ``users`` / ``accounts`` row once) straight into the same
  tables, the fastest way those rows can enter PostgreSQL;
- (c) the ``parquet`` writer into a local temp directory (zstd, partitions, manifest).

Traffic: 80% track (6 event names, ~500-byte events shaped like a web SDK's), 10% identify,
5% page, 5% group. Each measurement runs in a fresh subprocess that makes its events batch by
batch, so its peak RSS (``ru_maxrss``) shows the memory a batch needs, not the whole run.
Prints medians of ``--runs`` runs, the ratio a/b and the peak RSS, and the CPU seconds each side
(millpond's process, PostgreSQL's backend) spent per 100,000 events: on a machine shared with
other work the rates move with the load, the CPU per event does not.
Targets: (a) >= 50,000 events/s and >= 0.5 x (b); (c) >= 100,000 events/s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import add_quick_option, median, realistic_event  # noqa: E402

from millpond.warehouses.batch import StoredEvent  # noqa: E402

SOURCE = "src_bench"


def make_event(i: int) -> StoredEvent:
    """Event ``i`` of the mix; deterministic, so every subprocess makes the same events."""
    received = f"2026-11-20T{10 + i // 3_600_000 % 10:02d}:{i // 60_000 % 60:02d}:" \
               f"{i // 1000 % 60:02d}.{i % 1000:03d}Z"
    kind = i % 20
    if kind < 16:
        event = realistic_event(i, message_id=f"bench-{i}")
    else:
        rnd = random.Random(i)
        event = {"type": ("identify", "identify", "page", "group")[kind - 16],
                 "messageId": f"bench-{i}", "userId": f"user-{rnd.randrange(100_000):06d}",
                 "anonymousId": f"anon-{rnd.randrange(1 << 30)}",
                 "timestamp": received,
                 "context": {"library": {"name": "analytics.js", "version": "5.2.0"},
                             "ip": f"203.0.113.{i % 250}"}}
        if event["type"] == "identify":
            event["traits"] = {"email": f"u{i}@example.com", "plan": ("free", "pro")[i % 2],
                               "logins": i % 300}
        elif event["type"] == "page":
            event["name"] = "Product"
            event["properties"] = {"path": f"/products/{i % 5000}", "title": "A product"}
        else:
            event["groupId"] = f"org-{i % 2000}"
            event["traits"] = {"name": f"Org {i % 2000}", "employees": i % 900}
    event["receivedAt"] = received
    event["source_id"] = SOURCE
    return StoredEvent(i + 1, SOURCE, event)


def batches(events: int, batch: int) -> Iterator[list[StoredEvent]]:
    for start in range(0, events, batch):
        yield [make_event(i) for i in range(start, min(start + batch, events))]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def backend_cpu(conn) -> float:
    """CPU seconds the connection's server process has used (Linux ``/proc``; 0 elsewhere).

    Why: on a machine shared with other work, wall-clock rates move with the load; the CPU
    each side spends per event does not, so the report shows both."""
    try:
        with open(f"/proc/{conn.info.backend_pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the measurements, each run in its own subprocess ---------------------------------------


def child_postgres(dsn: str, events: int, batch: int) -> dict:
    from millpond.warehouses.batch import Loaded
    from millpond.warehouses.postgres import PostgresLoader, parse_settings

    loader = PostgresLoader(parse_settings({"dsn": dsn}))
    spent = cpu = 0.0
    for part in batches(events, batch):
        start, start_cpu = time.perf_counter(), time.process_time()
        outcome = loader.load(part)
        spent += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
        if not isinstance(outcome, Loaded) or not outcome.clean:
            raise SystemExit(f"load failed: {outcome}")
    server_cpu = backend_cpu(loader._conn)  # the loader's one connection, since it opened
    loader.close()
    return {"seconds": spent, "rss_mb": peak_rss_mb(), "cpu": cpu, "server_cpu": server_cpu}


def child_raw_copy(dsn: str, events: int, batch: int) -> dict:
    """COPY the loader's own rows straight into the loader's own (emptied) tables."""
    import psycopg

    from millpond.warehouses.flatten import flatten_batch
    from millpond.warehouses.naming import quote
    from millpond.warehouses.postgres import PostgresLoader, catalog, parse_settings, plan
    from millpond.warehouses.postgres.staging import COPY_TYPES
    from millpond.warehouses.types import ColumnType

    loader = PostgresLoader(parse_settings({"dsn": dsn}))
    first = next(batches(events, batch))
    loader.load(first)  # creates the tables and their columns, untimed
    loader.close()
    conn = psycopg.connect(dsn, autocommit=True)
    tables = [r[0] for r in conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'millpond'")]
    conn.execute("TRUNCATE " + ", ".join(f"millpond.{quote(t)}" for t in tables))
    state = catalog.read_catalog(conn, "millpond", "millpond_columns")
    seen_keys: set[tuple[str, str]] = set()
    spent = cpu = 0.0
    server_before = backend_cpu(conn)
    for part in batches(events, batch):
        # The rows the loader writes, prepared untimed: every event table, tracks, and the
        # users/accounts rows (each key once over the run, as a one-off COPY would have them).
        flat = flatten_batch(part)
        lay = plan.layout(flat, "")
        specs = {spec.name: spec for spec in plan.specs_for(lay, state)}
        tables = [plan.table_load(specs[name], rows, []) for name, rows in lay.rows.items()]
        for name, updates in lay.traits.items():
            load = plan.trait_load(specs[name], updates, [])
            rows = [r for r in load.rows if (name, r[0]) not in seen_keys]
            seen_keys.update((name, r[0]) for r in rows)
            tables.append(plan.TableLoad(name, ["id", "received_at", *load.columns],
                                         [ColumnType.TEXT, ColumnType.TIMESTAMP, *load.types],
                                         rows))
        start, start_cpu = time.perf_counter(), time.process_time()
        with conn.transaction(), conn.cursor() as cur:
            for load in tables:
                cols = ", ".join(quote(c) for c in load.columns)
                with cur.copy(f"COPY millpond.{quote(load.name)} ({cols}) "
                              "FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types([COPY_TYPES[t] for t in load.types])
                    for row in load.rows:
                        copy.write_row(row)
        spent += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
    server_cpu = backend_cpu(conn) - server_before
    conn.close()
    return {"seconds": spent, "rss_mb": peak_rss_mb(), "cpu": cpu, "server_cpu": server_cpu}


def child_parquet(events: int, batch: int) -> dict:
    from millpond.warehouses.batch import Loaded
    from millpond.warehouses.parquet import ParquetWriter, parse_settings

    with tempfile.TemporaryDirectory(prefix="millpond-bench-lake-") as lake:
        writer = ParquetWriter(parse_settings({"path": lake}))
        spent = cpu = 0.0
        for part in batches(events, batch):
            start, start_cpu = time.perf_counter(), time.process_time()
            outcome = writer.load(part)
            spent += time.perf_counter() - start
            cpu += time.process_time() - start_cpu
            if not isinstance(outcome, Loaded):
                raise SystemExit(f"write failed: {outcome}")
    return {"seconds": spent, "rss_mb": peak_rss_mb(), "cpu": cpu}


def run_child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"benchmark step {args[0]} failed:\n{out.stderr or out.stdout}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--batch", type=int, default=20_000, help="events per loader call")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    add_quick_option(p)
    args = p.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "postgres":
            result = child_postgres(rest[0], int(rest[1]), int(rest[2]))
        elif kind == "raw":
            result = child_raw_copy(rest[0], int(rest[1]), int(rest[2]))
        else:
            result = child_parquet(int(rest[0]), int(rest[1]))
        print(json.dumps(result))
        return
    if args.quick:
        args.events, args.batch, args.runs = 2_000, 500, 1

    from tests.support.postgres import PostgresServer

    server = PostgresServer().start()
    try:
        rates: dict[str, list[float]] = {"postgres": [], "raw": [], "parquet": []}
        cpus: dict[str, list[tuple[float, float]]] = {"postgres": [], "raw": []}
        parquet_cpu: list[float] = []
        rss: dict[str, float] = {}
        for run in range(args.runs):
            for kind in ("postgres", "raw"):
                dsn = server.create_database(f"bench_{kind}_{run}")
                result = run_child(kind, dsn, str(args.events), str(args.batch))
                rates[kind].append(args.events / result["seconds"])
                cpus[kind].append((result["cpu"], result["server_cpu"]))
                rss[kind] = max(rss.get(kind, 0.0), result["rss_mb"])
            result = run_child("parquet", str(args.events), str(args.batch))
            rates["parquet"].append(args.events / result["seconds"])
            parquet_cpu.append(result["cpu"])
            rss["parquet"] = max(rss.get("parquet", 0.0), result["rss_mb"])
    finally:
        server.destroy()
    pg, raw, pq = (median(rates[k]) for k in ("postgres", "raw", "parquet"))
    print(f"warehouse bench: {args.events:,} events (80% track, 10% identify, 5% page, "
          f"5% group), batches of {args.batch:,}, median of {args.runs} run(s)"
          + ("  [--quick: figures mean nothing]" if args.quick else ""))
    print(f"  (a) postgres loader     {pg:>10,.0f} events/s   peak RSS {rss['postgres']:.0f} MB")
    print(f"  (b) raw COPY, same rows {raw:>10,.0f} events/s   peak RSS {rss['raw']:.0f} MB")
    print(f"      ratio a/b           {pg / raw:>10.2f}            (targets: a >= 50,000/s, "
          "a/b >= 0.5)")
    per = 100_000 / args.events
    for kind, label in (("postgres", "(a)"), ("raw", "(b)")):
        client = median([c for c, _ in cpus[kind]]) * per
        server = median([s for _, s in cpus[kind]]) * per
        print(f"      {label} CPU s per 100k events: millpond {client:.2f}, PostgreSQL "
              f"{server:.2f}, total {client + server:.2f}")
    print(f"  (c) parquet, local dir  {pq:>10,.0f} events/s   peak RSS {rss['parquet']:.0f} MB"
          "   (target >= 100,000/s)")
    print(f"      (c) CPU s per 100k events: millpond {median(parquet_cpu) * per:.2f}")


if __name__ == "__main__":
    main()
