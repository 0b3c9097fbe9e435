"""Collector ingest benchmark: ``.venv/bin/python bench/ingest.py [--runs 3] [--seconds 8]``.

Measures, in one run and on one machine, with load from a second process on loopback:
- baseline A: the store's raw batched insert rate for the same events (no HTTP);
- baseline B: a no-op endpoint (``/ping``) on the same server stack;
- ``/v1/batch`` with 100-event batches of ~500-byte events, durable acknowledgements;
- single ``/v1/track`` calls, with p99 latency.
Prints medians of ``--runs`` runs and the ratios to the baselines.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    BenchServer,
    add_quick_option,
    free_port,
    loadgen,
    median,
    realistic_event,
)

from millpond.collector.validation import normalize  # noqa: E402
from millpond.storage.sqlite.log import SQLiteEventLog  # noqa: E402

PLACEHOLDER = "XXXXXXXXXXXX"


def raw_insert_rate(n: int = 200_000, batch: int = 2000) -> float:
    """Events/s the log itself takes for these events, in 2,000-event group commits.

    The embedded log alone, as before the storage seam: the whole store
    (``open_storage``) would also run its followers (the per-person index) on the second
    core, which is not the log's insert rate but a share of the machine."""
    events = [normalize(realistic_event(i, f"raw-{i}"), source_id="src_bench",
                        received_ms=int(time.time() * 1000)) for i in range(n)]
    with tempfile.TemporaryDirectory() as d:
        log = SQLiteEventLog(Path(d) / "log.db")
        started = time.perf_counter()
        for i in range(0, n, batch):
            log.submit(events[i:i + batch]).result()
        elapsed = time.perf_counter() - started
        log.close()
    return n / elapsed


def write_templates(d: Path) -> tuple[str, str, int]:
    batch = {"batch": [realistic_event(i, f"{PLACEHOLDER}-{i:03d}") for i in range(100)],
             "sentAt": "2026-11-20T10:00:00.000Z"}
    single = realistic_event(7, f"{PLACEHOLDER}-s")
    batch_file, single_file = d / "batch.json", d / "single.json"
    batch_file.write_bytes(msgspec.json.encode(batch))
    single_file.write_bytes(msgspec.json.encode(single))
    return str(batch_file), str(single_file), len(msgspec.json.encode(single))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--port", type=int, default=None, help="server port (default: a free one)")
    p.add_argument("--sync", default="FULL", choices=["FULL", "NORMAL"])
    add_quick_option(p)
    args = p.parse_args()
    raw_events = 200_000
    if args.quick:
        args.runs, args.seconds, raw_events = 1, 0.5, 4_000
    if args.port is None:
        args.port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="millpond-ingest-"))
    batch_file, single_file, event_size = write_templates(tmp)
    results: dict[str, list] = {"raw": [], "noop": [], "batch": [], "batch_p99": [],
                                "single": [], "single_p99": []}
    for run in range(args.runs):
        results["raw"].append(raw_insert_rate(raw_events))
        server = BenchServer(args.port, args.sync)
        try:
            base = run * 10_000_000
            noop = loadgen(args.port, "/ping", single_file, server.basic, 64, args.seconds, 0)
            results["noop"].append(noop["rps"])
            before = server.stored()
            b = loadgen(args.port, "/v1/batch", batch_file, server.basic, 16, args.seconds,
                        base)
            stored = server.stored() - before
            assert b["statuses"].get("200", 0) * 100 == stored, (b, stored)
            results["batch"].append(b["rps"] * 100)
            results["batch_p99"].append(b["p99_ms"])
            s = loadgen(args.port, "/v1/track", single_file, server.basic, 64, args.seconds,
                        base + 5_000_000)
            results["single"].append(s["rps"])
            results["single_p99"].append(s["p99_ms"])
            print(f"run {run + 1}: raw {results['raw'][-1]:,.0f} ev/s | noop "
                  f"{noop['rps']:,.0f} req/s | batch {b['rps'] * 100:,.0f} ev/s p99 "
                  f"{b['p99_ms']:.1f} ms {b['statuses']} | track {s['rps']:,.0f} req/s p99 "
                  f"{s['p99_ms']:.1f} ms {s['statuses']}", flush=True)
        finally:
            server.stop()
    m = {k: median(v) for k, v in results.items()}
    print()
    print(f"event size ~{event_size} bytes, sync={args.sync}, {args.runs} runs, medians:")
    print(f"  raw store insert (baseline A)   {m['raw']:>10,.0f} events/s")
    print(f"  no-op endpoint   (baseline B)   {m['noop']:>10,.0f} requests/s")
    print(f"  /v1/batch x100                  {m['batch']:>10,.0f} events/s   p99 "
          f"{m['batch_p99']:.1f} ms   = {m['batch'] / m['raw']:.0%} of raw insert "
          f"(target >= 50,000/s and >= 40%)")
    print(f"  /v1/track single                {m['single']:>10,.0f} requests/s p99 "
          f"{m['single_p99']:.1f} ms  = {m['single'] / m['noop']:.0%} of no-op "
          f"(target >= 4,000/s, p99 < 25 ms, >= 50%)")
    print(json.dumps({"medians": m}))


if __name__ == "__main__":
    main()
