"""The cluster backend's archive tier, read back against the stream:
``.venv/bin/python bench/cluster_archive.py [--events 40000] [--range 10000] [--runs 3]``.

On the local cluster (``millpond dev-cluster``'s engines: 3 NATS JetStream nodes,
PostgreSQL, moto's S3), the same ``--events`` events (``bench/common.py``'s ~500-byte track
events; their event times are *not* in arrival order, so a file sorted by event time has
row groups with wide seq ranges) in two places: (a) all in the stream, (b) every range of
``--range`` events sealed into Parquet files on S3 and purged from the stream. Measured,
alternating (a) and (b) within each run, medians of ``--runs``:
- read by seq: ``EventLog.read`` of the whole log in pages of 1,000 (a live feed catching
  up, a warehouse's first sync), events/s;
- window scan: ``EventIndex.scan`` of the whole log by event time, chunks of 2,000 (a
  replay), events/s;
- narrow window: ``EventIndex.scan`` of one minute of event time (a replay of a short
  window), events/s;
- seal: events/s moved from the stream to S3 (once, for (b)).
Prints ratios b/a.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_quick_option, median, realistic_event  # noqa: E402

from millpond.collector.validation import normalize  # noqa: E402
from millpond.devcluster import DevCluster  # noqa: E402
from millpond.devcluster.s3 import ACCESS_KEY, REGION, SECRET_KEY  # noqa: E402
from millpond.storage.cluster import ClusterStorage, open_cluster_storage  # noqa: E402
from millpond.storage.models import Window  # noqa: E402
from millpond.timeutil import parse_iso_ms  # noqa: E402

#: One minute of the events' event times (bench/common.py: 10:00 to 11:00).
MINUTE = (parse_iso_ms("2026-11-20T10:30:00Z"), parse_iso_ms("2026-11-20T10:31:00Z"))


def fill(storage: ClusterStorage, n: int) -> None:
    now = int(time.time() * 1000)
    for start in range(0, n, 2000):
        batch = [normalize(realistic_event(i, f"arc-{i}"), source_id="src_bench",
                           received_ms=now) for i in range(start, min(n, start + 2000))]
        storage.log.submit(batch).result(60)


async def read_rate(storage: ClusterStorage, n: int) -> float:
    started, after, seen = time.perf_counter(), 0, 0
    while page := await storage.log.read(after, 1000):
        seen += len(page)
        after = page[-1].seq
    assert seen == n, seen
    return seen / (time.perf_counter() - started)


async def scan_rate(storage: ClusterStorage, window: Window, expected: int) -> float:
    started, seen = time.perf_counter(), 0
    async for chunk in storage.index.scan(window, chunk=2000):
        seen += len(chunk)
    assert seen == expected, (seen, expected)
    return seen / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--range", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    add_quick_option(parser)
    args = parser.parse_args()
    if args.quick:
        args.events, args.range, args.runs = 2_000, 500, 1
    os.environ.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                      AWS_REGION=REGION)
    engines = DevCluster().start()
    places = {"a": f"bench{uuid.uuid4().hex[:10]}", "b": f"bench{uuid.uuid4().hex[:10]}"}
    bucket = f"bench-{uuid.uuid4().hex[:10]}"
    rates: dict[str, dict[str, list[float]]] = {k: {"read": [], "scan": [], "minute": []}
                                                 for k in places}
    try:
        engines.s3.client().create_bucket(Bucket=bucket)
        stores = {
            "a": open_cluster_storage(tuple(engines.nats.urls), engines.postgres.dsn(),
                                      places["a"]),
            "b": open_cluster_storage(tuple(engines.nats.urls), engines.postgres.dsn(),
                                      places["b"], archive=f"s3://{bucket}/log",
                                      archive_endpoint=engines.s3.endpoint,
                                      archive_range=args.range)}
        try:
            for store in stores.values():
                fill(store, args.events)
            archive = stores["b"].archive
            assert archive is not None
            started = time.perf_counter()
            sealed = 0
            while (stats := archive.seal_once()) is not None:
                sealed += stats.events
            seal = sealed / (time.perf_counter() - started)
            hot, archived = stores["b"].tiers()
            assert archived.events == sealed and hot.events == args.events - sealed
            minute = asyncio.run(stores["a"].index.count(Window(*MINUTE)))
            for run in range(args.runs):
                for key in ("a", "b")[::1 if run % 2 == 0 else -1]:
                    store = stores[key]
                    rates[key]["read"].append(asyncio.run(read_rate(store, args.events)))
                    rates[key]["scan"].append(asyncio.run(scan_rate(
                        store, Window(0, 1 << 62), args.events)))
                    rates[key]["minute"].append(asyncio.run(scan_rate(
                        store, Window(*MINUTE), minute)))
        finally:
            for store in stores.values():
                store.close()
    finally:
        engines.stop()
    print(f"{args.events} events, ranges of {args.range} ({sealed} archived to S3), "
          f"median of {args.runs} runs (alternating which goes first)")
    print(f"seal (stream -> Parquet on S3)      {seal:>10,.0f} events/s")
    for label, key in (("read by seq", "read"), ("window scan (all)", "scan"),
                       (f"narrow window ({minute} events)", "minute")):
        a, b = median(rates["a"][key]), median(rates["b"][key])
        print(f"{label:<34} (a) stream {a:>9,.0f}/s  (b) archive {b:>9,.0f}/s  "
              f"ratio b/a {b / a:.2f}")


if __name__ == "__main__":
    main()
