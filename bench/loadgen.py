"""A bounded HTTP/1.1 load generator on raw asyncio sockets, run as its own process.

Why not wrk: every request must carry fresh ``messageId``s (the log dedupes them), and a
template-with-counter client on uvloop is a few dozen lines. It keeps a fixed number of
keep-alive connections busy, stops after ``--requests`` or ``--seconds``, and prints JSON:
requests/s, status counts and latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

PLACEHOLDER = b"XXXXXXXXXXXX"


async def worker(host: str, port: int, head: bytes, template: bytes, counter: list[int],
                 stop: dict, latencies: list[float], statuses: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while not stop["now"] and counter[0] < stop["max_requests"]:
            n = counter[0]
            counter[0] += 1
            body = template.replace(PLACEHOLDER, b"%012d" % n)
            started = time.perf_counter()
            writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            status = int(status_line.split()[1])
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


async def run(args) -> dict:
    with open(args.body, "rb") as fh:
        template = fh.read()
    head = (f"POST {args.path} HTTP/1.1\r\nHost: {args.host}\r\n"
            f"Content-Type: application/json\r\n"
            f"Authorization: Basic {args.auth}\r\n").encode()
    counter = [args.start]
    stop = {"now": False, "max_requests": args.start + args.requests}
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    started = time.perf_counter()

    async def timer() -> None:
        await asyncio.sleep(args.seconds)
        stop["now"] = True

    t = asyncio.create_task(timer())
    await asyncio.gather(*(worker(args.host, args.port, head, template, counter, stop,
                                  latencies, statuses) for _ in range(args.connections)))
    t.cancel()
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {"requests": len(latencies), "seconds": elapsed,
            "rps": len(latencies) / elapsed, "statuses": statuses,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99),
            "mean_ms": statistics.fmean(latencies) * 1000 if latencies else 0}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--body", required=True, help="file with the body template")
    p.add_argument("--auth", default="", help="base64 of 'writekey:'")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--requests", type=int, default=100_000)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--start", type=int, default=0, help="first counter value (unique ids)")
    args = p.parse_args()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
