"""Replay benchmark: ``.venv/bin/python bench/replay.py [--events 1000000] [--runs 3]``.

In one run, on a temp log of ``--events`` events (80% track, 10% identify, 5% page, 5%
group, as ``bench/deliver.py``), in process (no network: this measures the replay
machinery, not a socket):
- baseline: the raw window scan, ``EventIndex.scan`` plus JSON decode, in (ts, seq) order;
- preview: the dry run over the whole window for a webhook (pass-through mapping) and
  for the Mixpanel presets (4 actions; 5% group events no action handles), events/s,
  through a worker pool like the server's (one process per core; the first run pays
  for starting it);
- unlimited replay: the replay runner into an in-process batching sink (webhook, 1,000
  events per request, destination limit 100,000/s), events/s;
- limited replay: a 1,000 events/s destination over ``--limit-seconds`` (default 60),
  achieved rate vs the limit, so the preview's ETA holds;
- live lag: a steady live load (``--live-rate``/s, received "now") through the live pump
  of the same destination (shared deliverer, 5,000/s) while a replay runs; p50/p99 of
  (delivered - received);
- peak RSS of a child process that previews and replays the first 100k and all events,
  and of its largest preview worker.
The process settles its heap before measuring (``millpond.heap.settle``), as the server
does once started and as the preview workers do once started (``WorkerPool``). Before
this (up to 497006d) it did not, so its replay paid for full collections walking ~80k
start-up objects the server never walks: compare across that commit with care.
Prints medians of ``--runs`` runs and ratios to the scan baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_quick_option, median  # noqa: E402
from deliver import MIXPANEL, fill, open_bench_storage  # noqa: E402

from millpond import heap  # noqa: E402
from millpond.collector.validation import normalize  # noqa: E402
from millpond.connections import config  # noqa: E402
from millpond.delivery.batcher import Batcher  # noqa: E402
from millpond.delivery.evaluate import Evaluator  # noqa: E402
from millpond.delivery.ledger import Ledger  # noqa: E402
from millpond.delivery.pump import Pump
from millpond.delivery.rate_limit import RateLimiter  # noqa: E402
from millpond.delivery.retry import RetryPolicy  # noqa: E402
from millpond.delivery.sender import Deliverer  # noqa: E402
from millpond.delivery.slices import LogTail  # noqa: E402
from millpond.delivery.transport import CountingTransport, Response  # noqa: E402
from millpond.replays.preview import PreviewJob, run_preview  # noqa: E402
from millpond.replays.runner import ReplayRunner  # noqa: E402
from millpond.storage import Storage  # noqa: E402
from millpond.storage.models import Run, RunKind, RunState, Window  # noqa: E402
from millpond.workers import WorkerPool  # noqa: E402

HOOK = {"url": "http://127.0.0.1:9/hook", "batch_size": 1000}


def a_plan(max_seq: int | None, rate: float) -> dict:
    return {"destination": "d", "destination_name": "bench", "sources": ["src_bench"],
            "source_names": {"src_bench": "bench"}, "all_sources": True,
            "excluded_sources": [], "ts_from": 0, "ts_to": 1 << 62, "from": "", "to": None,
            "max_seq": max_seq, "include_live": False, "filter": None, "rate": rate}


def runtime(type_name: str, settings: dict):
    return config.runtime(type_name, settings,
                          config.actions(None, config.destination_type(type_name)))


async def scan_rate(storage: Storage) -> float:
    decode = msgspec.json.Decoder().decode
    started, n = time.perf_counter(), 0
    async for chunk in storage.index.scan(Window(0, 1 << 62), chunk=5000):
        for row in chunk:
            decode(row.body)["seq"] = row.seq
        n += len(chunk)
    return n / (time.perf_counter() - started)


def preview_job(type_name: str, settings: dict, max_seq: int | None = None) -> PreviewJob:
    return PreviewJob(a_plan(max_seq, 1000.0), type_name, settings,
                      config.actions(None, config.destination_type(type_name)))


def preview_rate(storage: Storage, type_name: str, settings: dict, n: int,
                 pool: WorkerPool | None) -> float:
    started = time.perf_counter()
    out = asyncio.run(run_preview(storage.index, preview_job(type_name, settings), {}, pool))
    assert out["events"] == n, out["events"]
    return n / (time.perf_counter() - started)


def runner_for(storage: Storage, plan: dict, deliverer: Deliverer, rt) -> ReplayRunner:
    replay = storage.runs.create(Run(f"rpl_{time.monotonic_ns()}", "d", RunKind.REPLAY,
                                     RunState.RUNNING, plan))
    return ReplayRunner(replay, storage.runs, storage.index, deliverer,
                        Evaluator(rt.dtype, rt.actions), rt.dtype.batching,
                        deliverer.limiter.events.rate)


async def unlimited_rate(storage: Storage, n: int, max_seq: int | None = None) -> float:
    rt = runtime("webhook", HOOK)
    transport = CountingTransport()
    deliverer = Deliverer(rt.dtype, transport, RateLimiter(100_000), RetryPolicy())
    runner = runner_for(storage, a_plan(max_seq, 100_000), deliverer, rt)
    started = time.perf_counter()
    await runner.run()
    elapsed = time.perf_counter() - started
    assert transport.items == n, (transport.items, n)
    return n / elapsed


async def limited_rate(storage: Storage, seconds: float, limit: float) -> float:
    rt = runtime("webhook", {**HOOK, "batch_size": 100})
    transport = CountingTransport()
    deliverer = Deliverer(rt.dtype, transport, RateLimiter(limit), RetryPolicy())
    runner = runner_for(storage, a_plan(None, limit), deliverer, rt)
    task = asyncio.create_task(runner.run())
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    delivered, elapsed = transport.items, time.perf_counter() - started
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return delivered / elapsed


class LagSink(CountingTransport):
    """Counts like CountingTransport and records the lag of live items (source src_live)."""

    def __init__(self) -> None:
        super().__init__()
        self.lags: list[float] = []

    async def send(self, request) -> Response:
        now = time.time()
        for item in msgspec.json.decode(request.body):
            if item.get("source_id") == "src_live":
                received = item["receivedAt"]
                self.lags.append(now - time.mktime(time.strptime(received[:19],
                                                                 "%Y-%m-%dT%H:%M:%S"))
                                 + time.timezone - int(received[20:23]) / 1000)
        return await super().send(request)


async def live_lag(storage: Storage, seconds: float, live_rate: float) -> tuple:
    rt = runtime("webhook", {**HOOK, "batch_size": 100})
    sink = LagSink()
    deliverer = Deliverer(rt.dtype, sink, RateLimiter(5000), RetryPolicy())
    log = storage.log
    connected = log.last_seq()
    limits = rt.dtype.batching
    live = Pump(LogTail(log, connected), Evaluator(rt.dtype, rt.actions), deliverer,
                Batcher(limits.max_events, limits.max_bytes, 0.05), Ledger(connected),
                lambda *a: None)
    runner = runner_for(storage, a_plan(connected, 5000), deliverer, rt)
    halt = threading.Event()

    def produce() -> None:
        i, next_at = 0, time.monotonic()
        while not halt.is_set():
            batch = []
            for _ in range(max(1, int(live_rate / 20))):
                i += 1
                batch.append(normalize({"type": "track", "event": "Live", "userId": f"l{i % 50}",
                                        "messageId": f"live-{i}"}, source_id="src_live",
                                       received_ms=int(time.time() * 1000)))
            log.submit(batch).result()
            next_at += 0.05
            time.sleep(max(0.0, next_at - time.monotonic()))

    tasks = [asyncio.create_task(live.run()), asyncio.create_task(runner.run())]
    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    await asyncio.sleep(seconds)
    halt.set()
    await asyncio.to_thread(producer.join, 5)
    replayed = sink.items - len(sink.lags)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    lags = sorted(sink.lags)
    return (lags[len(lags) // 2], lags[int(len(lags) * 0.99)], len(lags), replayed / seconds)


def peak_rss_kib(pid: int) -> int:
    """A live process's peak RSS (VmHWM), in KiB; 0 if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in status.splitlines()
                 if line.startswith("VmHWM:")), 0)


def child_rss(data_dir: str, max_seq: int) -> int:
    """Peak RSS (KiB) of a fresh process that previews and replays ``max_seq`` events."""
    here = str(Path(__file__).parent)
    code = (f"import asyncio, resource, sys; sys.path.insert(0, {here!r});"
            f"import replay as r; from pathlib import Path;"
            f"storage = r.open_bench_storage(Path({data_dir!r}));"
            f"pool = r.WorkerPool(preload=['millpond.replays.preview']);"
            f"job = r.preview_job('webhook', r.HOOK, {max_seq});"
            f"asyncio.run(r.run_preview(storage.index, job, {{}}, pool));"
            f"workers = max([r.peak_rss_kib(p) for p in pool.pids()] or [0]);"
            f"pool.close();"
            f"asyncio.run(r.unlimited_rate(storage, {max_seq}, {max_seq}));"
            f"storage.close();"
            f"print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, workers)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    own, worker = out.stdout.strip().splitlines()[-1].split()
    return int(own), int(worker)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--limit", type=float, default=1000.0)
    p.add_argument("--limit-seconds", type=float, default=60.0)
    p.add_argument("--lag-seconds", type=float, default=20.0)
    p.add_argument("--live-rate", type=float, default=500.0)
    add_quick_option(p)
    args = p.parse_args()
    if args.quick:
        args.events, args.runs, args.limit_seconds, args.lag_seconds = 3_000, 1, 1.0, 1.0
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    heap.settle()  # as the server does once started (see millpond/heap.py)
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="millpond-bench-replay-") as tmp:
        d = Path(tmp) / "data"
        storage = open_bench_storage(d)
        t = time.perf_counter()
        fill(storage, args.events)
        print(f"filled the log with {args.events:,} events in {time.perf_counter() - t:.1f}s")
        n = args.events
        scans, pv_hook, pv_mp, unl = [], [], [], []
        pool = WorkerPool(preload=["millpond.replays.preview"])  # as the server's, started lazily
        for run in range(args.runs):
            scans.append(asyncio.run(scan_rate(storage)))
            pv_hook.append(preview_rate(storage, "webhook", HOOK, n, pool))
            pv_mp.append(preview_rate(storage, "mixpanel", MIXPANEL, n, pool))
            unl.append(asyncio.run(unlimited_rate(storage, n)))
            print(f"run {run + 1}: scan {scans[-1]:,.0f}/s, preview webhook {pv_hook[-1]:,.0f}/s,"
                  f" preview mixpanel {pv_mp[-1]:,.0f}/s, replay unlimited {unl[-1]:,.0f}/s",
                  flush=True)
        pool.close()
        base = median(scans)
        for name, values in (("scan (baseline)", scans), ("preview webhook", pv_hook),
                             ("preview mixpanel", pv_mp), ("replay unlimited", unl)):
            results[name] = median(values)
            print(f"{name:>20}: {median(values):>10,.0f} events/s  ({median(values) / base:.2f}x"
                  " scan)")
        limited = asyncio.run(limited_rate(storage, args.limit_seconds, args.limit))
        results["limited"] = limited
        print(f"{'replay limited':>20}: {limited:,.1f} events/s over {args.limit_seconds:.0f}s "
              f"vs limit {args.limit:,.0f} ({(limited / args.limit - 1) * 100:+.2f}%)")
        p50, p99, live_n, replay_rate = asyncio.run(
            live_lag(storage, args.lag_seconds, args.live_rate))
        results["live_lag"] = {"p50": p50, "p99": p99, "live_events": live_n,
                               "replay_rate": replay_rate}
        print(f"{'live lag in replay':>20}: p50 {p50:.3f}s p99 {p99:.3f}s ({live_n:,} live "
              f"events at {args.live_rate:,.0f}/s; replay meanwhile {replay_rate:,.0f}/s of "
              "the 5,000/s budget)")
        storage.close()
        small = min(100_000, n)
        rss_small, rss_all = child_rss(str(d), small), child_rss(str(d), n)
        results["rss_kib"] = {small: rss_small, n: rss_all}
        print(f"{'peak RSS':>20}: {small:,} events {rss_small[0] / 1024:.0f} MiB, "
              f"{n:,} events {rss_all[0] / 1024:.0f} MiB (largest preview worker: "
              f"{rss_small[1] / 1024:.0f} / {rss_all[1] / 1024:.0f} MiB)")
    print(json.dumps(results, default=str))


if __name__ == "__main__":
    main()
