"""Benchmark the SQLite log's time index in parts: what parts save appends, what they
cost a window scan.

    .venv/bin/python bench/time_index.py [--events 400000] [--runs 3] [--appends 600000]

Appends: ``--appends`` events with random event times are committed 5,000 at a time (a
group commit's size in an import) into logs whose parts are 1,000,000 seqs (one part,
filling up, like the hot store with the archive's default range) and 100,000 seqs (what a
log with archiving on is made with). Reports the CPU seconds and the bytes written
(``/proc/self/io``: the WAL and its checkpoints) per event of each, and their ratio.

The same events (random event times, ~200-byte bodies) are written to three logs whose
time index has one part, four parts and twenty parts (``part_seqs``), and a window scan
of everything is read from each in 2,000-event chunks, as a replay reads it. A scan of
several parts is one ``UNION ALL`` per chunk that SQLite merges (see
``storage/sqlite/time_index.py``), so this is the price of parts on the read side;
their gain is on the write side (``bench/import.py``). Reports the median CPU seconds of
``--runs`` scans per layout (process time: what a loaded machine inflates least),
events per CPU-second, and each layout's ratio to one part, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_quick_option, median  # noqa: E402

from millpond.storage.models import NewEvent, Window, WindowCursor  # noqa: E402
from millpond.storage.sqlite.index import SQLiteEventIndex  # noqa: E402
from millpond.storage.sqlite.log import SQLiteEventLog  # noqa: E402

CHUNK = 2_000
COMMIT = 5_000


def _events(count: int) -> list[NewEvent]:
    rng = random.Random(1)
    return [NewEvent("src", "track", f"m{i}", "Order Completed", f"u{i % 5000}", None,
                     rng.randrange(10**12), 0,
                     json.dumps({"type": "track", "messageId": f"m{i}", "pad": "x" * 150})
                     .encode()) for i in range(count)]


def _scan_cpu(index: SQLiteEventIndex) -> tuple[int, float]:
    started = time.process_time()
    read, after = 0, None
    while rows := index.chunk(Window(0, 10**12), after, CHUNK):
        read += len(rows)
        after = WindowCursor(rows[-1].ts_ms, rows[-1].seq)
    return read, time.process_time() - started


def _written() -> int | None:
    """Bytes this process has written (Linux), checkpoints included."""
    try:
        text = Path("/proc/self/io").read_text()
    except OSError:
        return None
    return int(next(line.split()[1] for line in text.splitlines()
                    if line.startswith("wchar:")))


def _append_cost(path: Path, events: list[NewEvent], part_seqs: int) -> tuple[float, float]:
    """(CPU seconds, bytes written) per event appending ``events`` in commits of COMMIT."""
    log = SQLiteEventLog(path, synchronous="OFF", part_seqs=part_seqs)
    try:
        cpu, written = time.process_time(), _written()
        for start in range(0, len(events), COMMIT):
            log.submit(events[start:start + COMMIT]).result()
        cpu, after = time.process_time() - cpu, _written()
    finally:
        log.close()
    wrote = after - written if after is not None and written is not None else float("nan")
    return cpu / len(events), wrote / len(events)


def _appends(count: int, runs: int) -> None:
    events = _events(count)
    results: dict[int, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for part_seqs in (1_000_000, 100_000):
            costs = [_append_cost(Path(tmp) / f"a{part_seqs}-{run}.db", events, part_seqs)
                     for run in range(runs)]
            results[part_seqs] = (median([c for c, _ in costs]), median([w for _, w in costs]))
            cpu, wrote = results[part_seqs]
            print(f"append, parts of {part_seqs:>9,}: {cpu * 1e6:5.1f} CPU-µs and "
                  f"{wrote / 1024:5.2f} KiB written per event")
    (big_cpu, big_wrote), (small_cpu, small_wrote) = results[1_000_000], results[100_000]
    print(f"ratio append parts of 100,000 / 1,000,000: CPU {small_cpu / big_cpu:.2f}, "
          f"written {small_wrote / big_wrote:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--appends", type=int, default=600_000)
    add_quick_option(parser)
    args = parser.parse_args()
    if args.quick:
        args.events, args.runs, args.appends = 2_000, 1, 20_000
    _appends(args.appends, args.runs)
    events = _events(args.events)
    layouts = {"one part": args.events, "4 parts": -(-args.events // 4),
               "20 parts": -(-args.events // 20)}
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, part_seqs in layouts.items():
            log = SQLiteEventLog(Path(tmp) / f"{part_seqs}.db", synchronous="OFF",
                                 part_seqs=part_seqs)
            try:
                for start in range(0, len(events), 20_000):
                    log.submit(events[start:start + 20_000]).result()
                index = SQLiteEventIndex(log)
                scans = [_scan_cpu(index) for _ in range(args.runs)]
            finally:
                log.close()
            if any(read != args.events for read, _ in scans):
                raise SystemExit(f"{name}: a scan read {scans} events, not {args.events}")
            results[name] = median([cpu for _, cpu in scans])
            print(f"{name:9} (parts of {part_seqs:,} seqs): {results[name]:.2f} CPU-s,"
                  f" {args.events / results[name]:,.0f} events per CPU-second")
    base = results["one part"]
    for name, cpu in results.items():
        print(f"ratio {name} / one part (CPU): {cpu / base:.2f}")


if __name__ == "__main__":
    main()
