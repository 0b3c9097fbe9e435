"""Benchmark the SQLite log's forever-dedupe as the key count grows: the cost per event
of group commits of new messages, per million keys already held.

    .venv/bin/python bench/dedupe.py [--keys 3000000] [--group 20000] [--runs 1]

Two layouts, each in a fresh subprocess and data dir, alternated run by run:

- ``one table``: every key inserted straight into one B-tree (``RECENT_KEYS`` set beyond
  the run's size, so ``dedupe_recent`` is the only table and is never merged): each
  commit's random keys land on random leaf pages of the whole key set, which is how the
  log kept its keys before ``dedupe_recent``;
- ``recent+merged`` (the log as shipped): new keys in a small table, moved into the big
  one every ``RECENT_KEYS`` keys in one sorted insert.

Events are tiny (the body is a few bytes) and carry their dedupe key precomputed, as an
import's reader process does, so the figures are the log's commit path with dedupe, not
JSON. Reports the µs per event of each million keys and of the last million, and the
ratio of the last million's figures (one table / recent+merged).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_quick_option  # noqa: E402

STEP = 1_000_000


def child(keys: int, group: int, one_table: bool) -> list[float]:
    """µs per event for each STEP keys appended (the last step may be shorter)."""
    from millpond.storage.models import NewEvent
    from millpond.storage.sqlite import dedupe
    from millpond.storage.sqlite.log import SQLiteEventLog

    if one_table:
        dedupe.RECENT_KEYS = keys + 1
    rng = random.Random(7)
    per_step: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        log = SQLiteEventLog(Path(tmp) / "log.db")
        try:
            done, step_start = 0, time.perf_counter()
            step = min(STEP, keys)
            while done < keys:
                n = min(group, keys - done)
                events = [NewEvent("src", "track", f"m{done + i}", None, None, None, 0, 0,
                                   b"{}", dedupe_key=rng.getrandbits(64) - (1 << 63))
                          for i in range(n)]
                log.submit(events).result(600)
                done += n
                if done % step == 0 or done == keys:
                    now = time.perf_counter()
                    per_step.append((now - step_start) * 1e6 / (done - len(per_step) * step))
                    step_start = now
        finally:
            log.close()
    return per_step


def run(keys: int, group: int, one_table: bool) -> list[float]:
    out = subprocess.run([sys.executable, __file__, "--child", "1" if one_table else "0",
                          "--keys", str(keys), "--group", str(group)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"run failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=3_000_000)
    parser.add_argument("--group", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    add_quick_option(parser)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.keys, args.group, args.child == "1")))
        return
    if args.quick:
        args.keys, args.group, args.runs = 20_000, 2_000, 1
    figures: dict[str, list[list[float]]] = {"one table": [], "recent+merged": []}
    for i in range(args.runs):
        for name in figures:
            steps = run(args.keys, args.group, name == "one table")
            figures[name].append(steps)
            print(f"run {i + 1} {name}: " + ", ".join(f"{v:.1f}" for v in steps)
                  + " µs/event per million keys", flush=True)
    last = {name: statistics.median(r[-1] for r in runs) for name, runs in figures.items()}
    print(f"\n{'layout':<16}{'last million, µs/event (median)':>34}")
    for name, value in last.items():
        print(f"{name:<16}{value:>34.1f}")
    print(f"ratio one table / recent+merged at {args.keys:,} keys: "
          f"{last['one table'] / last['recent+merged']:.2f}")


if __name__ == "__main__":
    main()
