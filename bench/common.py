"""Helpers shared by the benchmarks: realistic events, a server process, medians."""

from __future__ import annotations

import argparse
import base64
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"
EVENT_NAMES = ["Product Viewed", "Product Added", "Checkout Started", "Order Completed",
               "Signed Up", "Page Scrolled"]


def realistic_event(i: int, message_id: str | None = None) -> dict:
    """A ~500-byte track event shaped like what a web SDK sends."""
    rnd = random.Random(i)
    return {
        "type": "track",
        "event": EVENT_NAMES[i % len(EVENT_NAMES)],
        "userId": f"user-{rnd.randrange(100_000):06d}",
        "anonymousId": str(uuid.UUID(int=rnd.getrandbits(128))),
        "messageId": message_id or str(uuid.UUID(int=rnd.getrandbits(128))),
        "timestamp": f"2026-11-20T10:{i % 60:02d}:{(i // 60) % 60:02d}.{i % 1000:03d}Z",
        "properties": {"product_id": f"sku-{rnd.randrange(5000)}", "price": round(
            rnd.uniform(1, 300), 2), "currency": "EUR", "quantity": rnd.randrange(1, 5),
            "category": "Games"},
        "context": {"library": {"name": "analytics-node", "version": "3.1.0"},
                    "ip": f"203.0.113.{i % 250}",
                    "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/156",
                    "page": {"path": f"/products/{i % 5000}", "referrer": ""}},
    }


#: ``MILLPOND_BENCH_QUICK=1`` is ``--quick`` for every benchmark (what ``make test`` sets).
QUICK_ENV = "MILLPOND_BENCH_QUICK"


def add_quick_option(parser: argparse.ArgumentParser) -> None:
    """``--quick``: every step of the benchmark at a smoke-test size, in a few seconds.

    Why: at their default sizes the benchmarks take minutes, so a test cannot run them,
    and a benchmark nobody runs rots (an API renamed, an import moved). The quick size
    runs each step on tiny inputs, once; its figures mean nothing. The README
    walk-through test runs the README's benchmark commands as printed, with the
    environment variable set.
    """
    parser.add_argument(
        "--quick", action="store_true",
        default=os.environ.get(QUICK_ENV, "").strip() not in ("", "0"),
        help=f"smoke test: every step on tiny inputs, one run, short timings, overriding "
             f"the sizes given (figures mean nothing); also env {QUICK_ENV}=1")


def free_port() -> int:
    """A port nothing listens on now, so a benchmark does not collide with a server."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


class BenchServer:
    """``millpond serve`` on a fresh temp data dir, stopped on exit."""

    def __init__(self, port: int, sync: str = "FULL"):
        self.port = port
        self.dir = tempfile.mkdtemp(prefix="millpond-bench-")
        env = {**os.environ, "MILLPOND_ADMIN_TOKEN": TOKEN}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "millpond.cli.main", "serve", "--port", str(port),
             "--data", self.dir, "--sync", sync], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                httpx.get(self.url + "/healthz", timeout=0.5)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        r = httpx.post(self.url + "/api/sources", json={"name": "bench"},
                       headers={"Authorization": f"Bearer {TOKEN}"})
        r.raise_for_status()
        self.write_key = r.json()["write_key"]
        self.basic = base64.b64encode(f"{self.write_key}:".encode()).decode()

    def stored(self) -> int:
        return httpx.get(self.url + "/healthz").json()["last_seq"]

    def stop(self) -> None:
        """Stop the server and remove its data dir (hundreds of MB after a load run)."""
        self.proc.terminate()
        self.proc.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)


def loadgen(port: int, path: str, body_file: str, auth: str, connections: int,
            seconds: float, start: int, requests: int = 10_000_000) -> dict:
    import json

    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "loadgen.py"), "--port", str(port), "--path",
         path, "--body", body_file, "--auth", auth, "--connections", str(connections),
         "--seconds", str(seconds), "--start", str(start), "--requests", str(requests)],
        capture_output=True, text=True, check=True)
    return json.loads(out.stdout)
