"""Regulations benchmark: ``.venv/bin/python bench/regulations.py [--events 1000000]``.

Measures, in one run and on one machine:
- the screen's cost per event on the delivery path: decoding an event (what the pump
  does for every event anyway; the baseline) against decoding it and asking the
  blocklist, with 10,000 people suppressed;
- the collector's cost: ``normalize`` of a message (the baseline) against ``normalize``
  plus the suppression check;
- deleting one person from a log of ``--events`` events in the embedded store (events,
  dead letters, then the scrub: checkpoints and VACUUM), against a plain scan of the
  log's id columns (the baseline: a deletion must look at every event once).
Prints the figures and the ratios to the baselines.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_quick_option, realistic_event  # noqa: E402

from millpond.collector.validation import normalize  # noqa: E402
from millpond.regulations.blocklist import Blocklist, screen_out  # noqa: E402
from millpond.storage import StorageConfig, open_storage  # noqa: E402
from millpond.storage.models import Regulation, RegulationType  # noqa: E402


def _blocklist(n: int) -> Blocklist:
    ids = [f"suppressed-{i}" for i in range(n)]
    blocklist = Blocklist()
    blocklist.load([Regulation("reg_bench", RegulationType.SUPPRESS, ids, [], ids, "bench",
                               time.time())])
    return blocklist


def per_event_costs(n: int) -> None:
    bodies = [msgspec.json.encode(realistic_event(i)) for i in range(n)]
    decode = msgspec.json.Decoder().decode
    blocklist = _blocklist(10_000)
    started = time.perf_counter()
    for body in bodies:
        decode(body)
    base = time.perf_counter() - started
    started = time.perf_counter()
    blocked = blocklist.blocked
    for i, body in enumerate(bodies):
        event = decode(body)
        blocked(event.get("userId"), event.get("anonymousId"), i)
    screened = time.perf_counter() - started
    print(f"pump, per event: decode {base / n * 1e6:.2f} us; decode + screen "
          f"{screened / n * 1e6:.2f} us (ratio {screened / base:.3f})")

    # normalize fills in the message it is given: each pass gets fresh copies
    messages = [realistic_event(i) for i in range(n)]
    again = [realistic_event(i) for i in range(n)]
    started = time.perf_counter()
    events = [normalize(m, source_id="src", received_ms=1) for m in messages]
    base = time.perf_counter() - started
    started = time.perf_counter()
    events = [normalize(m, source_id="src", received_ms=1) for m in again]
    screen_out(events, blocklist, "src")
    screened = time.perf_counter() - started
    print(f"collector, per message: normalize {base / n * 1e6:.2f} us; normalize + "
          f"suppression check {screened / n * 1e6:.2f} us (ratio {screened / base:.3f})")


def deletion(n: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        storage = open_storage(StorageConfig(data_dir=d))
        batch = []
        for i in range(n):
            message = realistic_event(i)
            if i % 1000 == 7:
                message["userId"] = "person-to-forget"
            batch.append(normalize(message, source_id="src", received_ms=1))
            if len(batch) == 5000:
                storage.log.submit(batch).result()
                batch = []
        if batch:
            storage.log.submit(batch).result()
        import sqlite3  # the baseline reads the file directly: no contract has a scan
        conn = sqlite3.connect(Path(d) / "log.db")
        started = time.perf_counter()
        conn.execute("SELECT count(*) FROM events WHERE user_id IN ('x') OR "
                     "anonymous_id IN ('x')").fetchone()
        scan = time.perf_counter() - started
        conn.close()
        eraser = storage.eraser
        started = time.perf_counter()
        eraser.dead_letters(["person-to-forget"])
        removed = eraser.events(["person-to-forget"])
        steps = time.perf_counter() - started
        started = time.perf_counter()
        eraser.scrub()
        scrub = time.perf_counter() - started
        size = sum(f.stat().st_size for f in Path(d).iterdir())
        storage.close()
    print(f"deletion of one person ({removed} events) from {n:,} events: scan baseline "
          f"{scan:.2f} s; dead letters + events {steps:.2f} s (ratio {steps / scan:.1f}); "
          f"scrub {scrub:.2f} s for {size / 1e6:.0f} MB of files")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000,
                        help="events in the log the deletion runs over")
    parser.add_argument("--per-event", type=int, default=200_000,
                        help="events timed for the per-event costs")
    add_quick_option(parser)
    args = parser.parse_args()
    if args.quick:
        args.events, args.per_event = 5_000, 2_000
    per_event_costs(args.per_event)
    deletion(args.events)


if __name__ == "__main__":
    main()
