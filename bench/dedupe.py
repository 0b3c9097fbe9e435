"""Benchmark the SQLite log's forever-dedupe as the key count grows: the cost per event
of group commits of new messages, per million keys already held.

    .venv/bin/python bench/dedupe.py [--keys 3000000] [--group 20000] [--runs 1]

Two layouts, each in a fresh subprocess and data dir, alternated run by run:

- ``one table``: every key inserted straight into one B-tree (``RECENT_KEYS`` set beyond
  the run's size, so ``dedupe_recent`` is the only table and is never merged): each
  commit's random keys land on random leaf pages of the whole key set, which is how the
  log kept its keys before ``dedupe_recent``;
- ``recent+runs`` (the log as shipped): new keys in a small table, which becomes a run
  appended to ``dedupe_runs`` every ``RECENT_KEYS`` keys, behind an in-memory filter.
  (Until the runs, it was merged into one big table instead; ``--child 0 --keys N``
  prints the per-million figures of either version, to compare them in one sitting.)

Events are tiny (the body is a few bytes) and carry their dedupe key precomputed, as an
import's reader process does, so the figures are the log's commit path with dedupe, not
JSON. Reports, for each million keys and for the last million: wall µs per event, CPU
µs per event (the process's user + system time: what a shared machine's load does not
inflate) and bytes written per event (``wchar`` of ``/proc/self/io``: the WAL and its
checkpoints, the cost the layout is about); and the ratios of the last million's figures
(one table / recent+runs).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_quick_option  # noqa: E402

STEP = 1_000_000


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _written() -> int:
    """Bytes this process passed to write() so far (0 where /proc has no io file)."""
    try:
        text = Path("/proc/self/io").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in text.splitlines()
                 if line.startswith("wchar:")), 0)


def child(keys: int, group: int, one_table: bool) -> list[list[float]]:
    """[wall µs, CPU µs, bytes written] per event for each STEP keys appended."""
    from millpond.storage.models import NewEvent
    from millpond.storage.sqlite import dedupe
    from millpond.storage.sqlite.log import SQLiteEventLog

    if one_table:
        dedupe.RECENT_KEYS = keys + 1
    rng = random.Random(7)
    per_step: list[list[float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        log = SQLiteEventLog(Path(tmp) / "log.db")
        try:
            done, counted = 0, 0
            mark = (time.perf_counter(), _cpu(), _written())
            step = min(STEP, keys)
            while done < keys:
                n = min(group, keys - done)
                events = [NewEvent("src", "track", f"m{done + i}", None, None, None, 0, 0,
                                   b"{}", dedupe_key=rng.getrandbits(64) - (1 << 63))
                          for i in range(n)]
                log.submit(events).result(600)
                done += n
                if done % step == 0 or done == keys:
                    now = (time.perf_counter(), _cpu(), _written())
                    k = done - counted
                    per_step.append([(now[0] - mark[0]) * 1e6 / k, (now[1] - mark[1]) * 1e6 / k,
                                     (now[2] - mark[2]) / k])
                    mark, counted = now, done
        finally:
            log.close()
    return per_step


def run(keys: int, group: int, one_table: bool) -> list[list[float]]:
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
    figures: dict[str, list[list[list[float]]]] = {"one table": [], "recent+runs": []}
    for i in range(args.runs):
        for name in figures:
            steps = run(args.keys, args.group, name == "one table")
            figures[name].append(steps)
            print(f"run {i + 1} {name} (wall µs / CPU µs / bytes written, per event, per "
                  "million keys): " + ", ".join(f"{w:.1f}/{c:.1f}/{b:,.0f}" for w, c, b in steps),
                  flush=True)
    last = {name: [statistics.median(r[-1][k] for r in runs) for k in range(3)]
            for name, runs in figures.items()}
    print(f"\n{'last million, per event (median)':<34}{'wall µs':>10}{'CPU µs':>10}"
          f"{'bytes written':>16}")
    for name, (wall, cpu, written) in last.items():
        print(f"{name:<34}{wall:>10.1f}{cpu:>10.1f}{written:>16,.0f}")
    one, new = last["one table"], last["recent+runs"]
    print(f"ratio one table / recent+runs at {args.keys:,} keys: wall {one[0] / new[0]:.2f},"
          f" CPU {one[1] / new[1]:.2f}, bytes written {one[2] / max(new[2], 1):.2f}")


if __name__ == "__main__":
    main()
