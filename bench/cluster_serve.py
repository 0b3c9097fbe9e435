"""Ingest and delivery through ``millpond serve`` processes, on the local cluster and on the
embedded store: ``.venv/bin/python bench/cluster_serve.py [--seconds 8] [--runs 3]``.

In one run, on one machine, the same load against:
- (E) one process on the embedded store (SQLite, synchronous=FULL): the baseline;
- (C1) one process on the local cluster (``millpond dev-cluster``'s engines: 3 nats-servers,
  the stream at 3 replicas, PostgreSQL for state, dedupe and index);
- (C2) two processes on that cluster, the load split evenly across both.

Ingest: ``bench/loadgen.py`` (a process per millpond process) posts ``/v1/batch`` of 100
~500-byte events with fresh messageIds over ``--connections`` keep-alive connections in
all for ``--seconds``; events/s = acknowledged events / the load's wall time, and every
acknowledged event is checked stored (the log's last seq). Delivery: a webhook destination
(batches of 500) created disabled before the load, pointing at a receiver in its own
process that answers at once (``bench/latency_receiver.py``, no latency); after the load it
is enabled, and events/s = the backlog / the time until its stats count every event sent.
On the cluster one process (the destination's lease owner) delivers, whichever is asked.

Prints medians of ``--runs`` runs and the ratios of each cluster figure to the embedded
store's. What limits the cluster here is CPU: the millpond processes, three nats-servers,
PostgreSQL and the load generators share two cores; see ``docs/architecture.md``.
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import latency_receiver  # noqa: E402
from common import TOKEN, BenchServer, add_quick_option, free_port, median  # noqa: E402
from ingest import write_templates  # noqa: E402

from millpond.devcluster import DevCluster  # noqa: E402
from millpond.devcluster.millponds import MillpondProcesses  # noqa: E402

HOOK_BATCH = 500


class Target:
    """Some millpond processes sharing one store: their URLs, a write key, the admin."""

    def __init__(self, urls: list[str], token: str):
        self.urls = urls
        self.admin = httpx.Client(base_url=urls[0], timeout=30,
                                  headers={"Authorization": f"Bearer {token}"})
        r = self.admin.post("/api/sources", json={"name": "bench-load"})
        r.raise_for_status()
        self.write_key = r.json()["write_key"]

    def stored(self) -> int:
        return int(httpx.get(self.urls[0] + "/healthz", timeout=10).json()["last_seq"])


def load(target: Target, batch_file: str, connections: int, seconds: float,
         start: int) -> tuple[float, int]:
    """(acknowledged events/s, acknowledged events) of ``/v1/batch`` posts spread evenly
    over every process of ``target``, one load generator process each."""
    import base64
    basic = base64.b64encode(f"{target.write_key}:".encode()).decode()
    results: list[dict] = [{} for _ in target.urls]

    def one(i: int, url: str) -> None:
        port = int(url.rsplit(":", 1)[1])
        out = subprocess.run(
            [sys.executable, str(Path(__file__).with_name("loadgen.py")), "--port", str(port),
             "--path", "/v1/batch", "--body", batch_file, "--auth", basic,
             "--connections", str(max(connections // len(target.urls), 1)),
             "--seconds", str(seconds), "--start", str(start + i * 1_000_000)],
            capture_output=True, text=True, check=True)
        results[i] = json.loads(out.stdout)

    threads = [threading.Thread(target=one, args=(i, u)) for i, u in enumerate(target.urls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    acked = sum(r["statuses"].get("200", 0) for r in results) * 100
    others = {k: v for r in results for k, v in r["statuses"].items() if k != "200"}
    if others:
        print(f"    (answers other than 200: {others})", flush=True)
    return acked / seconds, acked


def deliver(target: Target, ref: str, expected: int, timeout: float = 600) -> float:
    """Events/s from enabling the destination until its stats count ``expected`` sent."""
    started = time.perf_counter()
    target.admin.post(f"/api/destinations/{ref}/enable").raise_for_status()
    deadline = started + timeout
    while time.perf_counter() < deadline:
        stats = target.admin.get(f"/api/destinations/{ref}/stats").json()["stats"]
        if stats["sent"] >= expected:
            return expected / (time.perf_counter() - started)
        time.sleep(0.05)
    raise SystemExit(f"the destination sent {stats['sent']} of {expected} in {timeout:g}s")


def measure(target: Target, hook_url: str, batch_file: str, connections: int,
            seconds: float, start: int) -> tuple[float, float]:
    """(ingest events/s, delivery events/s) on ``target``."""
    r = target.admin.post("/api/destinations", json={
        "name": "hook", "type": "webhook", "enabled": False,
        "settings": {"url": hook_url, "batch_size": HOOK_BATCH},
        "rate_limit": {"events_per_second": 100_000, "requests_per_second": None}})
    r.raise_for_status()
    ref = r.json()["id"]
    before = target.stored()
    rate, acked = load(target, batch_file, connections, seconds, start)
    assert target.stored() - before >= acked, (target.stored() - before, acked)
    return rate, deliver(target, ref, acked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--connections", type=int, default=16)
    add_quick_option(parser)
    args = parser.parse_args()
    if args.quick:
        args.runs, args.seconds = 1, 1.0
    tmp = Path(tempfile.mkdtemp(prefix="millpond-cluster-serve-"))
    batch_file, _, event_size = write_templates(tmp)
    ctx = multiprocessing.get_context("spawn")
    pipe, child = ctx.Pipe()
    receiver = ctx.Process(target=latency_receiver.serve, args=(child, 0.0), daemon=True)
    receiver.start()
    hook_url = f"http://127.0.0.1:{pipe.recv()}/hook"
    results: dict[str, list[float]] = collections.defaultdict(list)
    engines = DevCluster().start()
    try:
        for run in range(args.runs):
            base = run * 100_000_000
            server = BenchServer(free_port())
            try:
                figures = measure(Target([server.url], TOKEN), hook_url, batch_file,
                                  args.connections, args.seconds, base)
            finally:
                server.stop()
            results["E ingest"].append(figures[0])
            results["E deliver"].append(figures[1])
            for count in (1, 2):
                place = f"bench{run}p{count}"  # a fresh stream and schema per run
                os.environ["MILLPOND_STORAGE_PLACE"] = place
                procs = MillpondProcesses(engines.nats.servers, engines.postgres.dsn(),
                                          tmp / place, count=count).start()
                try:
                    figures = measure(Target(procs.urls, procs.admin_token), hook_url,
                                      batch_file, args.connections, args.seconds,
                                      base + count * 10_000_000)
                finally:
                    procs.stop()
                results[f"C{count} ingest"].append(figures[0])
                results[f"C{count} deliver"].append(figures[1])
            print(f"run {run + 1}: " + " | ".join(f"{k} {v[-1]:,.0f}"
                                                   for k, v in results.items()), flush=True)
    finally:
        engines.stop()
        pipe.send("report")
        pipe.recv()
        receiver.join(10)
    m = {k: median(v) for k, v in results.items()}
    print()
    print(f"/v1/batch of 100 events of ~{event_size} bytes, {args.connections} connections, "
          f"{args.seconds:g} s of load, median of {args.runs} runs (events/s):")
    print(f"{'':34}{'ingest':>10}{'ratio':>8}{'delivery':>11}{'ratio':>8}")
    for key, label in (("E", "(E) embedded store, 1 process"),
                       ("C1", "(C1) cluster, 1 process"),
                       ("C2", "(C2) cluster, 2 processes")):
        i, d = m[f"{key} ingest"], m[f"{key} deliver"]
        print(f"{label:34}{i:>10,.0f}{i / m['E ingest']:>8.2f}{d:>11,.0f}"
              f"{d / m['E deliver']:>8.2f}")


if __name__ == "__main__":
    main()
