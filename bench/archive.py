"""Archive tier benchmark: ``.venv/bin/python bench/archive.py [--events 400000]
[--range 100000] [--runs 3]``.

In one run, the same ``--events`` events (``bench/deliver.py``'s mix, event times spread
over an hour and interleaved with arrival) in two stores: one all hot (the baseline), one
whose every range of ``--range`` events has been sealed into the Parquet archive. In
process, no network:
- scan: ``EventIndex.scan`` of the whole log plus JSON decode, events/s;
- replay: the replay runner into an in-process batching sink (webhook, 1,000 events per
  request, limit 100,000/s), over the whole log and over an event-time window (the
  middle half hour), events/s; target: archived within 20% of hot;
- pages: the events list's pages (``EventIndex.query``: the oldest 50 events, one
  user's first 50, a type with none), milliseconds for the three; what the console's
  and ``millpond events list``'s first page costs;
- seal: events/s moved from the hot store into Parquet files;
- disk per event: the hot store's ``log.db`` (after a checkpoint and VACUUM) per event,
  the archive's files per event, and what the archived store keeps hot per archived
  event (its dedupe keys).
Prints medians of ``--runs`` runs and archived/hot ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_quick_option, median  # noqa: E402
from deliver import fill  # noqa: E402
from replay import a_plan, runner_for, runtime, scan_rate  # noqa: E402

from millpond.delivery.rate_limit import RateLimiter  # noqa: E402
from millpond.delivery.retry import RetryPolicy  # noqa: E402
from millpond.delivery.sender import Deliverer  # noqa: E402
from millpond.delivery.transport import CountingTransport  # noqa: E402
from millpond.storage import Storage, StorageConfig, open_storage  # noqa: E402
from millpond.storage.models import EventQuery, Window  # noqa: E402
from millpond.timeutil import parse_iso_ms  # noqa: E402

#: The middle half hour of the events' event times (bench/common.py: 10:00 to 11:00).
WINDOW = (parse_iso_ms("2026-11-20T10:15:00Z"), parse_iso_ms("2026-11-20T10:45:00Z"))


def open_store(path: Path, archive_range: int) -> Storage:
    return open_storage(StorageConfig(data_dir=str(path), synchronous="NORMAL",
                                      archive_range=archive_range))


async def replay_rate(storage: Storage, window: tuple[int, int] | None) -> float:
    rt = runtime("webhook", {"url": "http://127.0.0.1:9/hook", "batch_size": 1000})
    transport = CountingTransport()
    deliverer = Deliverer(rt.dtype, transport, RateLimiter(100_000), RetryPolicy())
    plan = a_plan(None, 100_000)
    if window is not None:
        plan |= {"ts_from": window[0], "ts_to": window[1]}
    expected = await storage.index.count(Window(plan["ts_from"], plan["ts_to"]))
    runner = runner_for(storage, plan, deliverer, rt)
    started = time.perf_counter()
    await runner.run()
    elapsed = time.perf_counter() - started
    assert transport.items == expected, (transport.items, expected)
    return expected / elapsed


async def pages_ms(storage: Storage) -> float:
    started = time.perf_counter()
    for q in (EventQuery(limit=50), EventQuery(user_id="user-000042", limit=50),
              EventQuery(types=["group"], limit=50)):
        await storage.index.query(q)
    return (time.perf_counter() - started) * 1000


def vacuumed_size(path: Path) -> int:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("VACUUM")  # in WAL mode the smaller file lands with the checkpoint
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--range", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    add_quick_option(parser)
    args = parser.parse_args()
    if args.quick:
        args.events, args.range, args.runs = 4000, 1000, 1
    results: dict[str, object] = {"events": args.events, "range": args.range}
    with tempfile.TemporaryDirectory(prefix="millpond-bench-archive-") as tmp:
        hot = open_store(Path(tmp) / "hot", 0)
        archived = open_store(Path(tmp) / "archived", args.range)
        archive = archived.archive  # type: ignore[attr-defined]
        fill(hot, args.events)
        archive.close()  # this run seals by itself, timed
        fill(archived, args.events)
        started = time.perf_counter()
        while archive.seal_once() is not None:
            pass
        seal = archived.tiers()[1].events / (time.perf_counter() - started)
        print(f"sealed {archived.tiers()[1].events:,} events into "
              f"{len(archive.files())} files at {seal:,.0f} events/s")
        rates: dict[str, list[float]] = {}
        for run in range(args.runs):
            for name, store in (("hot", hot), ("archived", archived)):
                rates.setdefault(f"scan {name}", []).append(asyncio.run(scan_rate(store)))
                rates.setdefault(f"replay {name}", []).append(
                    asyncio.run(replay_rate(store, None)))
                rates.setdefault(f"window replay {name}", []).append(
                    asyncio.run(replay_rate(store, WINDOW)))
                rates.setdefault(f"pages {name}", []).append(asyncio.run(pages_ms(store)))
            print(f"run {run + 1}: " + ", ".join(
                f"{k} {v[-1]:,.0f}" + (" ms" if k.startswith("pages") else "/s")
                for k, v in rates.items()))
        for what in ("scan", "replay", "window replay"):
            h, a = median(rates[f"{what} hot"]), median(rates[f"{what} archived"])
            results[what] = {"hot": round(h), "archived": round(a), "ratio": round(a / h, 3)}
            print(f"{what:>14}: hot {h:>10,.0f}/s  archived {a:>10,.0f}/s  "
                  f"({a / h:.2f}x hot)")
        h, a = median(rates["pages hot"]), median(rates["pages archived"])
        results["pages_ms"] = {"hot": round(h, 1), "archived": round(a, 1),
                               "ratio": round(a / h, 2)}
        print(f"{'pages':>14}: hot {h:>10,.1f} ms archived {a:>10,.1f} ms ({a / h:.2f}x hot)")
        hot_tiers = hot.tiers()
        archive_tier = archived.tiers()[1]
        hot.close()
        archived.close()
        per_hot = vacuumed_size(Path(tmp) / "hot" / "log.db") / args.events
        kept_hot = vacuumed_size(Path(tmp) / "archived" / "log.db") / args.events
        per_archive = archive_tier.bytes / archive_tier.events
        results |= {"seal_events_per_second": round(seal), "hot_bytes_per_event":
                    round(per_hot, 1), "archive_bytes_per_event": round(per_archive, 1),
                    "archived_store_hot_bytes_per_event": round(kept_hot, 1),
                    "hot_events": hot_tiers[0].events}
        print(f"{'disk/event':>14}: hot {per_hot:,.0f} B, archive {per_archive:,.0f} B "
              f"({per_archive / per_hot:.2f}x), plus {kept_hot:,.0f} B kept hot per "
              "archived event (dedupe keys)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
