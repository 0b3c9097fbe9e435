"""The log on a 3-node JetStream cluster against the embedded store:
``.venv/bin/python bench/cluster.py [--events 60000] [--runs 3] [--batch 100] [--inflight 8]``.

One publisher (one process, one thread submitting ``--batch``-event appends with up to
``--inflight`` of them in flight, as the collector's request handlers do) appends the same
~500-byte events, in one run on one machine, to:
- (a) the embedded store's log (SQLite, synchronous=FULL): the baseline;
- (b) a JetStream stream with 3 replicas (the scale-out log);
- (c) a JetStream stream with 1 replica on the same cluster (what replication costs);
- (d) (b) with the forever dedupe table on PostgreSQL (what the scale-out log will run);
then reads (b) back from the start (the live feed's path). Prints medians of ``--runs``
runs and the ratios b/a, b/c and d/a.

What limits (b) here: the three nats-server processes, the publisher and its client share
this machine's cores, and every event crosses loopback three times (client to leader,
leader to two followers) plus its acknowledgement; on separate hosts the servers get cores
of their own and the network adds a round trip per append (not per event: appends are
pipelined). The publisher's own share is ~0.12 CPU-s per 10,000 events (an append's
messages go out as one command, PubAcks are read straight from the parser), the three
servers' 0.3-0.45 s: on two cores the servers alone cap (b) well below the embedded store.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import psutil
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_quick_option, median, realistic_event  # noqa: E402

from millpond.collector.validation import normalize  # noqa: E402
from millpond.devcluster import DevCluster  # noqa: E402
from millpond.devcluster.nats import NatsCluster  # noqa: E402
from millpond.storage import StorageConfig, open_storage  # noqa: E402
from millpond.storage.models import AppendResult, NewEvent  # noqa: E402
from millpond.storage.nats import LogSettings, open_log  # noqa: E402
from millpond.storage.postgres import PgDedupeTable  # noqa: E402


def make_events(n: int, run: str) -> list[NewEvent]:
    now = int(time.time() * 1000)
    return [normalize(realistic_event(i, f"{run}-{i}"), source_id="src_bench", received_ms=now)
            for i in range(n)]


def publish(submit: Callable[[list[NewEvent]], Future[AppendResult]], events: list[NewEvent],
            batch: int, inflight: int) -> float:
    """Events/s with ``inflight`` appends of ``batch`` events outstanding at a time."""
    pending: collections.deque[Future[AppendResult]] = collections.deque()
    stored = 0
    started = time.perf_counter()
    for i in range(0, len(events), batch):
        if len(pending) >= inflight:
            stored += pending.popleft().result(60).stored
        pending.append(submit(events[i:i + batch]))
    while pending:
        stored += pending.popleft().result(60).stored
    elapsed = time.perf_counter() - started
    assert stored == len(events), (stored, len(events))
    return len(events) / elapsed


def embedded(events: list[NewEvent], batch: int, inflight: int) -> float:
    with tempfile.TemporaryDirectory() as d:
        storage = open_storage(StorageConfig(data_dir=d))
        try:
            return publish(storage.log.submit, events, batch, inflight)
        finally:
            storage.close()


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def jetstream(cluster: NatsCluster, replicas: int, events: list[NewEvent], batch: int,
              inflight: int, cpu: dict[str, list[float]],
              dedupe_dsn: str | None = None) -> tuple[float, float]:
    """(append events/s, read events/s) on a fresh stream of ``replicas`` (with a dedupe
    table on PostgreSQL at ``dedupe_dsn``); adds the CPU seconds per 10,000 appended events
    of the publisher and the servers to ``cpu``."""
    import asyncio

    import nats

    name = f"BENCH{uuid.uuid4().hex[:8]}"
    dedupe = None
    if dedupe_dsn is not None:
        with psycopg.connect(dedupe_dsn, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {name.lower()}")  # type: ignore[arg-type]
        dedupe = PgDedupeTable(dedupe_dsn, schema=name.lower())
    log = open_log(LogSettings(servers=tuple(cluster.urls), stream=name, subject=name.lower(),
                               replicas=replicas), dedupe)
    servers = [n.pid for n in cluster.nodes if n.pid is not None]
    try:
        before = cpu_seconds([os.getpid()]), cpu_seconds(servers)
        rate = publish(log.submit, events, batch, inflight)
        per = 10_000 / len(events)
        tag = f"{replicas}{'d' if dedupe else ''}"
        cpu[f"client{tag}"].append((cpu_seconds([os.getpid()]) - before[0]) * per)
        cpu[f"servers{tag}"].append((cpu_seconds(servers) - before[1]) * per)
        started = time.perf_counter()
        after, seen = 0, 0
        while True:
            chunk = asyncio.run(log.read(after, 5000))
            if not chunk:
                break
            seen += len(chunk)
            after = chunk[-1].seq
        read_rate = seen / (time.perf_counter() - started)
        assert seen == len(events), (seen, len(events))
    finally:
        log.close()

        async def drop() -> None:
            nc = await nats.connect(cluster.urls)
            await nc.jetstream().delete_stream(name)
            await nc.close()

        asyncio.run(drop())
    return rate, read_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--inflight", type=int, default=8)
    add_quick_option(parser)
    args = parser.parse_args()
    if args.quick:
        args.events, args.runs = 2_000, 1
    results: dict[str, list[float]] = collections.defaultdict(list)
    cpu: dict[str, list[float]] = collections.defaultdict(list)
    engines = DevCluster().start()
    cluster, dsn = engines.nats, engines.postgres.dsn()
    try:
        for run in range(args.runs):
            events = make_events(args.events, f"r{run}-{uuid.uuid4().hex[:6]}")
            results["a"].append(embedded(events, args.batch, args.inflight))
            rate, read_rate = jetstream(cluster, 3, events, args.batch, args.inflight, cpu)
            results["b"].append(rate)
            results["read"].append(read_rate)
            results["c"].append(jetstream(cluster, 1, events, args.batch, args.inflight,
                                          cpu)[0])
            results["d"].append(jetstream(cluster, 3, events, args.batch, args.inflight, cpu,
                                          dsn)[0])
    finally:
        engines.stop()
    a, b, c, d = (median(results[k]) for k in "abcd")
    print(f"{args.events} events of ~500 bytes, appends of {args.batch}, {args.inflight} in "
          f"flight, median of {args.runs} runs")
    print(f"(a) embedded store (SQLite, FULL)       {a:>10,.0f} events/s")
    print(f"(b) JetStream, 3 replicas               {b:>10,.0f} events/s")
    print(f"(c) JetStream, 1 replica, same cluster  {c:>10,.0f} events/s")
    print(f"(d) (b) + dedupe table on PostgreSQL    {d:>10,.0f} events/s")
    print(f"    JetStream read back from the start  {median(results['read']):>10,.0f} events/s")
    print(f"ratio b/a (3 replicas vs embedded)      {b / a:>10.2f}")
    print(f"ratio b/c (cost of 3 replicas)          {b / c:>10.2f}")
    print(f"ratio d/a (3 replicas + dedupe table)   {d / a:>10.2f}")
    for r, label in (("3", "3 replicas"), ("1", "1 replica"), ("3d", "3 replicas + dedupe")):
        print(f"CPU s per 10k events, {label}: publisher {median(cpu[f'client{r}']):.2f}, "
              f"nats-servers {median(cpu[f'servers{r}']):.2f} "
              f"(this machine has {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
