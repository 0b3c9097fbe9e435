"""Segments benchmark: building segments over a log vs a raw scan of the same log.

    .venv/bin/python bench/segments.py --events 100000 --people 10000 --segments 3

Appends ``--events`` realistic track events of ``--people`` users to a fresh embedded
store, then times (1) a raw scan (read and decode every event: the floor any build
pays) and (2) building ``--segments`` event-based segments with the engine, and prints
events/s of each, their ratio and the peak RSS. The issue's target is 10 segments over
1,000,000 events of 100,000 people at 200,000 events/s or more.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from common import realistic_event  # noqa: E402

from millpond.collector.validation import normalize  # noqa: E402
from millpond.segments.engine import SegmentEngine  # noqa: E402
from millpond.storage.models import Segment  # noqa: E402
from millpond.storage.sqlite import SQLiteStorage  # noqa: E402

DEFINITIONS = [
    {"event": "Order Completed"},
    {"event": "Order Completed", "at_least": 2},
    {"event": "Product Viewed", "where": "properties.price > 100"},
    {"event": "Signed Up", "within": "30d"},
    {"not": {"event": "Checkout Started"}},
    {"event": "Product Added", "at_least": 3, "at_most": 10},
    {"any": [{"event": "Order Completed"}, {"event": "Checkout Started"}]},
    {"event": "Page Scrolled", "between": ["2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"]},
    {"all": [{"event": "Product Viewed"}, {"not": {"event": "Order Completed"}}]},
    {"event": "Product Added", "where": "properties.quantity >= 3"},
]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def main(events: int, people: int, segments: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        storage = SQLiteStorage(Path(tmp), synchronous="NORMAL", on_commit=None)
        try:
            now = int(time.time() * 1000)
            batch = []
            for i in range(events):
                msg = realistic_event(i)
                msg["userId"] = f"user-{i % people:06d}"
                batch.append(normalize(msg, source_id="src_bench", received_ms=now))
                if len(batch) == 5000:
                    await storage.log.append(batch)
                    batch = []
            if batch:
                await storage.log.append(batch)
            print(f"log: {events:,} events of {people:,} people; peak RSS "
                  f"{peak_rss_mib():.0f} MiB")

            decode = msgspec.json.Decoder().decode
            start, after, seen = time.perf_counter(), 0, 0
            while True:
                rows = await storage.log.read(after, 5000)
                if not rows:
                    break
                for row in rows:
                    decode(row.body)
                seen += len(rows)
                after = rows[-1].seq
            scan = time.perf_counter() - start
            print(f"raw scan: {seen / scan:,.0f} events/s ({scan:.2f} s)")

            engine = SegmentEngine(storage)
            engine.ensure_source()
            start = time.perf_counter()
            for n, definition in enumerate(DEFINITIONS[:segments]):
                storage.segments.create(Segment(f"seg_{n}", f"bench-{n}", f"Bench {n}",
                                                definition, created_ms=now))
                seg = await engine.build(f"seg_{n}")
                print(f"  segment {n}: {storage.segments.count_members(seg.id):,} members")
            build = time.perf_counter() - start
            rate = events * segments / build
            print(f"build {segments} segment(s): {build:.2f} s, {rate:,.0f} events/s "
                  f"(segment-events), ratio to raw scan {rate / (seen / scan):.3f}; "
                  f"peak RSS {peak_rss_mib():.0f} MiB")
        finally:
            storage.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--segments", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.people, min(args.segments, len(DEFINITIONS))))
