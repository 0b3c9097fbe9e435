"""Delivery benchmark: ``.venv/bin/python bench/deliver.py [--events 300000] [--runs 3]``.

Measures, in one run and on one machine, on a temp store (``open_storage``) filled
through ``EventLog.submit``:
- baseline: the raw log scan, ``EventLog.read`` in the pump's chunk size plus JSON decode,
  read as the pumps read (the SQLite log answers from a worker thread, one hop per chunk).
  Before the storage seam (7bf6e4c) this line scanned synchronously on the event loop,
  which no pump did (they hopped per chunk too): compare it with care across that commit;
- the pump end to end: log tail -> decode -> trigger -> mapping -> required fields ->
  validate -> batching -> ``build_request`` -> classify -> checkpoints of a live run,
  into an *in-process sink* that answers 200 and counts (no network: this measures the
  pump, not a socket), for the Mixpanel presets (4 actions; @merge/@if mappings) and for
  a webhook in 1000-event batches (pass-through mapping). ``--http`` adds a run through
  the real shared HTTP client (aiohttp) to a tiny raw-asyncio HTTP server on loopback;
- the rate limit: a 1,000 events/s destination over ``--limit-seconds`` (default 60),
  achieved rate vs the limit;
- requests in flight: a webhook of batch 1 over loopback HTTP to a receiver that answers
  after ``--latency-ms`` (default 50) in its own process and checks per-user order
  (``bench/latency_receiver.py``), with ``--in-flight`` requests at once (default: the
  webhook type's own ``max_in_flight``), over ``--latency-events`` events of 1,000 users.
  One request in flight would reach 1 / 50 ms = 20 events/s. The same run into an
  in-process transport that answers after the same latency separates the engine's share
  from the HTTP client's, and the receiver alone, driven by ``bench/loadgen.py`` (its own
  process) over as many connections, shows that the receiver is not the limit.
Prints medians of ``--runs`` runs and the ratios to the baseline. ``--in-flight-only``
runs only the requests-in-flight part (for alternated before/after runs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))
import latency_receiver  # noqa: E402
from common import add_quick_option, median, realistic_event  # noqa: E402

from millpond import heap  # noqa: E402
from millpond.collector.validation import normalize  # noqa: E402
from millpond.connections import config  # noqa: E402
from millpond.delivery.batcher import Batcher  # noqa: E402
from millpond.delivery.evaluate import Evaluator
from millpond.delivery.ledger import Ledger  # noqa: E402
from millpond.delivery.outcomes import stamp  # noqa: E402
from millpond.delivery.pump import Pump
from millpond.delivery.rate_limit import RateLimiter  # noqa: E402
from millpond.delivery.retry import RetryPolicy  # noqa: E402
from millpond.delivery.sender import Deliverer  # noqa: E402
from millpond.delivery.slices import LogTail  # noqa: E402
from millpond.delivery.transport import (  # noqa: E402
    CountingTransport,
    HttpTransport,
    Response,
)
from millpond.destinations.webhook import Webhook  # noqa: E402
from millpond.storage import Storage, StorageConfig, open_storage  # noqa: E402
from millpond.storage.models import Run, RunKind, RunState  # noqa: E402

CHUNK = 500
#: A typical hand-written action: track events, five fields picked from each.
ORDERS = [{"name": "Products", "trigger": 'type = "track" and properties.price > 0',
           "mapping": {"event": {"@path": "$.event"},
                       "product": {"@path": "$.properties.product_id"},
                       "amount": {"@path": "$.properties.price"},
                       "user": {"@path": "$.userId"}, "messageId": {"@path": "$.messageId"}}}]
MIXPANEL = {"project_token": "0123456789abcdef0123", "api_secret": "fedcba9876543210fedc",
            "endpoint": "http://127.0.0.1:9"}


def open_bench_storage(path: Path) -> Storage:
    """A fresh store on ``path`` (its log commits without waiting for the disk), all hot:
    ``bench/archive.py`` measures the archive tier against it."""
    return open_storage(StorageConfig(data_dir=str(path), synchronous="NORMAL",
                                      archive_range=0))


def fill(storage: Storage, n: int) -> None:
    """``n`` events: 80% track, 10% identify, 5% page, 5% group (no Mixpanel action)."""
    kinds = ["track"] * 16 + ["identify"] * 2 + ["page", "group"]
    now = int(time.time() * 1000)
    batch = []
    for i in range(n):
        msg = realistic_event(i, f"bench-{i}")
        kind = kinds[i % len(kinds)]
        if kind != "track":
            msg.pop("event")
            msg["type"] = kind
            msg.update({"identify": {"traits": {"email": f"u{i}@example.com"}},
                        "page": {"name": "Pricing"}, "group": {"groupId": "acme"}}[kind])
        batch.append(normalize(msg, source_id="src_bench", received_ms=now))
        if len(batch) == 2000:
            storage.log.submit(batch).result()
            batch = []
    if batch:
        storage.log.submit(batch).result()


async def scan_rate(storage: Storage, n: int) -> float:
    decode = msgspec.json.Decoder().decode
    started = time.perf_counter()
    after, seen = 0, 0
    while True:
        rows = await storage.log.read(after, CHUNK)
        if not rows:
            break
        for row in rows:
            decode(row.body)["seq"] = row.seq
        seen += len(rows)
        after = rows[-1].seq
    assert seen == n
    return n / (time.perf_counter() - started)


def make_pump(storage: Storage, type_name: str, settings: dict, actions, transport,
              rate: float, max_in_flight: int = 1) -> Pump:
    rt = config.runtime(type_name, settings, config.actions(actions, config.destination_type(
        type_name)))
    run = storage.runs.create(Run(f"bench-{time.monotonic_ns()}", "bench", RunKind.LIVE,
                                  RunState.RUNNING, cursor=0))
    limits = rt.dtype.batching

    def persist(cursor, counts, dead, _finished, outcomes=None):
        storage.runs.checkpoint(run.id, cursor=cursor, counts=counts,
                                dead=stamp(dead, "bench", run.id), outcomes=outcomes)

    return Pump(LogTail(storage.log, 0, chunk=CHUNK), Evaluator(rt.dtype, rt.actions),
                Deliverer(rt.dtype, transport, RateLimiter(rate), RetryPolicy(),
                          max_in_flight=max_in_flight),
                Batcher(limits.max_events, limits.max_bytes, limits.linger_seconds),
                Ledger(0), persist, max_in_flight=max_in_flight)


async def pump_rate(storage, n, type_name, settings, actions, transport) -> float:
    pump = make_pump(storage, type_name, settings, actions, transport, 1e9)
    started = time.perf_counter()
    task = asyncio.create_task(pump.run())
    while pump.ledger.cursor < n:
        await asyncio.sleep(0.005)
        if task.done():
            task.result()
    elapsed = time.perf_counter() - started
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return n / elapsed


async def limited_rate(storage, seconds: float, limit: float) -> float:
    transport = CountingTransport()
    settings = {"url": "http://127.0.0.1:9/hook", "batch_size": 10}
    pump = make_pump(storage, "webhook", settings, None, transport, limit)
    task = asyncio.create_task(pump.run())
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    delivered, elapsed = transport.items, time.perf_counter() - started
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return delivered / elapsed


def fill_users(storage: Storage, n: int, users: int = 1000) -> None:
    """``n`` track events of ``users`` users, each user's events spread over the log."""
    rng = random.Random(5)
    now = int(time.time() * 1000)
    batch = []
    for i in range(n):
        msg = realistic_event(i, f"lat-{i}")
        msg["userId"] = f"user-{rng.randrange(users):04d}"
        batch.append(normalize(msg, source_id="src_bench", received_ms=now))
        if len(batch) == 2000 or i == n - 1:
            storage.log.submit(batch).result()
            batch = []


class LatencyTransport:
    """In-process: answers 200 after ``latency`` seconds (the engine without a socket)."""

    def __init__(self, latency: float):
        self.latency = latency

    async def send(self, request) -> Response:
        await asyncio.sleep(self.latency)
        return Response(200, {}, b"{}")

    async def aclose(self) -> None:
        return None


async def engine_latency_rate(storage: Storage, n: int, latency: float,
                              in_flight: int) -> float:
    settings = {"url": "http://127.0.0.1:9/hook", "batch_size": 1}
    pump = make_pump(storage, "webhook", settings, None, LatencyTransport(latency), 1e9,
                     max_in_flight=in_flight)
    started = time.perf_counter()
    task = asyncio.create_task(pump.run())
    while pump.ledger.cursor < n:
        await asyncio.sleep(0.01)
        if task.done():
            task.result()
    elapsed = time.perf_counter() - started
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return n / elapsed


def start_receiver(latency: float):
    """The latency receiver in its own process: ``(process, pipe, port)``."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=latency_receiver.serve, args=(child, latency), daemon=True)
    proc.start()
    return proc, parent, parent.recv()


def receiver_alone(n: int, latency: float, connections: int) -> tuple[float, dict]:
    """Requests/s the latency receiver answers to ``bench/loadgen.py`` (raw sockets, its
    own process) over ``connections`` keep-alive connections, each user in one request:
    its ceiling is ``connections / latency``, and if it reaches that, the receiver is not
    what limits the in-flight run."""
    proc, pipe, port = start_receiver(latency)
    with tempfile.NamedTemporaryFile("wb", suffix=".json") as body:
        body.write(b'{"userId":"u-XXXXXXXXXXXX","seq":1,"type":"track",'
                   b'"event":"Order Completed","properties":{"price":12.5}}')
        body.flush()
        out = subprocess.run(
            [sys.executable, str(Path(__file__).with_name("loadgen.py")), "--port", str(port),
             "--path", "/hook", "--body", body.name, "--connections", str(connections),
             "--requests", str(n), "--seconds", "600"],
            check=True, capture_output=True, text=True).stdout
    pipe.send("report")
    report = pipe.recv()
    proc.join(10)
    return json.loads(out)["rps"], report


async def latency_rate(storage: Storage, n: int, latency: float,
                       in_flight: int) -> tuple[float, dict]:
    """Events/s of a batch-1 webhook to the latency receiver, and the receiver's report."""
    proc, parent, port = start_receiver(latency)
    transport = HttpTransport()
    try:
        settings = {"url": f"http://127.0.0.1:{port}/hook", "batch_size": 1}
        pump = make_pump(storage, "webhook", settings, None, transport, 1e9,
                         max_in_flight=in_flight)
        started = time.perf_counter()
        task = asyncio.create_task(pump.run())
        while pump.ledger.cursor < n:
            await asyncio.sleep(0.01)
            if task.done():
                task.result()
        elapsed = time.perf_counter() - started
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    finally:
        await transport.aclose()
    parent.send("report")
    report = parent.recv()
    proc.join(10)
    return n / elapsed, report


async def start_sink() -> tuple[asyncio.AbstractServer, int]:
    """A tiny keep-alive HTTP/1.1 server that reads each request and answers 200."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=300_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--limit", type=float, default=1000.0, help="events/s for the limited run")
    p.add_argument("--limit-seconds", type=float, default=60.0)
    p.add_argument("--http", action="store_true", help="also run through a loopback HTTP sink")
    p.add_argument("--latency-ms", type=float, default=50.0,
                   help="the in-flight run's receiver latency")
    p.add_argument("--latency-events", type=int, default=20_000)
    p.add_argument("--in-flight", type=int,
                   default=Webhook.default_rate_limit.max_in_flight,
                   help="max_in_flight of the in-flight run (default: the webhook's own, "
                        "%(default)s)")
    p.add_argument("--in-flight-only", action="store_true",
                   help="run only the requests-in-flight part")
    add_quick_option(p)
    args = p.parse_args()
    if args.quick:
        args.events, args.runs, args.limit_seconds = 3_000, 1, 1.0
        args.latency_events = 500
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    heap.settle()  # as the server does once started (see millpond/heap.py)
    if not args.in_flight_only:
        through_the_pump(args)
    in_flight(args)


def through_the_pump(args: argparse.Namespace) -> None:
    """The baseline scan, the pump into an in-process sink (and over HTTP), the limit."""
    with tempfile.TemporaryDirectory(prefix="millpond-bench-deliver-") as tmp:
        storage = open_bench_storage(Path(tmp))
        t = time.perf_counter()
        fill(storage, args.events)
        print(f"filled the log with {args.events:,} events in {time.perf_counter() - t:.1f}s")

        baseline = median([asyncio.run(scan_rate(storage, args.events))
                           for _ in range(args.runs)])
        print(f"baseline  raw log scan (read x{CHUNK} + decode): {baseline:>10,.0f} "
              "events/s")

        webhook = {"url": "http://127.0.0.1:9/hook", "batch_size": 1000}
        cases = [("webhook x1000, 1 action, 5 fields mapped", "webhook", webhook, ORDERS),
                 ("webhook x1000, preset pass-through ($.)", "webhook", webhook, None),
                 ("mixpanel, 4 preset actions (@merge/@if)", "mixpanel", MIXPANEL, None)]
        print("pump into an in-process counting sink (trigger + mapping + batching + "
              "build_request + checkpoints):")
        for label, type_name, settings, actions in cases:
            rates = [asyncio.run(pump_rate(storage, args.events, type_name, settings, actions,
                                           CountingTransport())) for _ in range(args.runs)]
            rate = median(rates)
            print(f"  {label:<44} {rate:>10,.0f} events/s  ({rate / baseline:.2f}x "
                  f"baseline; runs {', '.join(f'{r:,.0f}' for r in rates)})")

        if args.http:
            async def over_http() -> float:
                server, port = await start_sink()
                transport = HttpTransport()
                try:
                    settings = {"url": f"http://127.0.0.1:{port}/hook", "batch_size": 1000}
                    return await pump_rate(storage, args.events, "webhook", settings, ORDERS,
                                           transport)
                finally:
                    await transport.aclose()
                    server.close()

            rates = [asyncio.run(over_http()) for _ in range(args.runs)]
            rate = median(rates)
            print(f"  {'same 5 fields, over loopback HTTP (aiohttp)':<44} {rate:>10,.0f} events/s"
                  f"  ({rate / baseline:.2f}x baseline; runs "
                  f"{', '.join(f'{r:,.0f}' for r in rates)})")

        runs = [asyncio.run(limited_rate(storage, args.limit_seconds, args.limit))
                for _ in range(args.runs if args.limit_seconds <= 10 else 1)]
        achieved = median(runs)
        print(f"limited   {args.limit:,.0f} events/s over {args.limit_seconds:g}s: achieved "
              f"{achieved:,.1f} events/s ({(achieved / args.limit - 1) * 100:+.2f}% of the "
              "limit)")
        storage.close()


def in_flight(args: argparse.Namespace) -> None:
    """A batch-1 webhook to a receiver ``--latency-ms`` away: the engine alone, the
    receiver alone, and the two over loopback HTTP (medians of ``--runs``)."""
    latency, n, slots = args.latency_ms / 1000, args.latency_events, args.in_flight
    with tempfile.TemporaryDirectory(prefix="millpond-bench-latency-") as tmp:
        storage = open_bench_storage(Path(tmp))
        fill_users(storage, n)
        rates = [asyncio.run(engine_latency_rate(storage, n, latency, slots))
                 for _ in range(args.runs)]
        print(f"in flight {n:,} events, webhook batch 1, in-process transport answering "
              f"after {args.latency_ms:g} ms, max_in_flight {slots}: {median(rates):,.0f} "
              f"events/s (the engine alone; runs {_runs(rates)})")
        alone = [receiver_alone(n, latency, slots) for _ in range(args.runs)]
        rps = [r for r, _ in alone]
        print(f"receiver  alone, {n:,} requests from bench/loadgen.py over {slots} "
              f"connections: {median(rps):,.0f} requests/s (its ceiling "
              f"{slots / latency:,.0f}/s; runs {_runs(rps)})")
        runs = [asyncio.run(latency_rate(storage, n, latency, slots))
                for _ in range(args.runs)]
        rates = [r for r, _ in runs]
        broken = [rep for _, rep in runs if rep["overlaps"] or rep["out_of_order"]]
        order = "kept" if not broken else \
            f"BROKEN ({broken[0]['overlaps']} overlaps, {broken[0]['out_of_order']} " \
            "out of order)"
        print(f"in flight {n:,} events, webhook batch 1, receiver latency "
              f"{args.latency_ms:g} ms, max_in_flight {slots}: {median(rates):,.0f} "
              f"events/s (one in flight: {1000 / args.latency_ms:,.0f}/s; runs "
              f"{_runs(rates)}); up to {max(rep['peak'] for _, rep in runs)} requests at "
              f"once; per-user order {order} over {runs[0][1]['events']:,} events checked "
              "by the receiver in each run")
        storage.close()


def _runs(values: list[float]) -> str:
    return ", ".join(f"{v:,.0f}" for v in values)


if __name__ == "__main__":
    main()
