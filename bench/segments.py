"""Segments benchmark: building segments over a log vs a raw scan of the same log, then
membership updates under live ingest.

    .venv/bin/python bench/segments.py --events 1000000 --people 100000 --segments 10

Appends ``--events`` realistic track events of ``--people`` users to a fresh embedded
store, then

1. times a raw scan (read and decode every event: the floor any build pays);
2. builds ``--segments`` segments (mixed definitions: counts, ``where``, ``within``,
   ``between``, ``not``, ``any``) together, with one scan of the log, and prints log
   events/s, segment-events/s (events x segments / s) and the ratio of the first to
   the raw scan;
3. runs the engine (follower and scheduler) while ``--live-rate`` events/s arrive for
   ``--live-seconds`` (a tenth of them purchases, so people enter segments), and prints
   the p50 / p99 delay from an event's commit to the commit of the memberships it
   changed (the follower's checkpoint passing it);
4. saves the follower's state as a stop does, then times a restart's making of it: by a
   scan of the log, and taken up from the saved state (``segments/saved_state.py``);
5. writes the build's outputs alone (its Audience events and membership rows, read back)
   into a fresh store, in as many batches as the build wrote them, and prints the build
   speed those writes alone would allow: a ceiling on any build that stores the same
   outputs there, whatever its scan and evaluation cost.

It prints the peak RSS after each step; run it at two log sizes (100k and 1M events,
same people) to see that memory follows the people, not the log. The issue's targets:
10 segments over 1,000,000 events of 100,000 people at 200,000 events/s or more; with
5,000 events/s of live ingest, membership updates p99 under 1 s. Step 5 says how much
of the first target the store's writes alone leave room for.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from common import add_quick_option, realistic_event  # noqa: E402

from millpond import heap  # noqa: E402
from millpond.collector.validation import normalize  # noqa: E402
from millpond.segments import saved_state  # noqa: E402
from millpond.segments.build import BATCH  # noqa: E402
from millpond.segments.engine import SegmentEngine  # noqa: E402
from millpond.segments.outputs import COMPUTED_SOURCE_ID  # noqa: E402
from millpond.storage.models import NewEvent, Segment  # noqa: E402
from millpond.storage.sqlite import SQLiteStorage  # noqa: E402
from millpond.storage.sqlite.segments import SQLiteSegmentStore  # noqa: E402
from millpond.storage.sqlite.storage import FILES  # noqa: E402
from millpond.timeutil import format_ms  # noqa: E402

DEFINITIONS = [
    {"event": "Order Completed"},
    {"event": "Order Completed", "at_least": 2},
    {"event": "Product Viewed", "where": "properties.price > 100"},
    {"event": "Signed Up", "within": "30d"},
    {"not": {"event": "Checkout Started"}},
    {"event": "Product Added", "at_least": 3, "at_most": 10},
    {"any": [{"event": "Order Completed"}, {"event": "Checkout Started"}]},
    {"event": "Page Scrolled", "between": ["2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"]},
    {"all": [{"event": "Product Viewed"}, {"not": {"event": "Order Completed"}}]},
    {"event": "Product Added", "where": "properties.quantity >= 3"},
]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def fill(storage: SQLiteStorage, events: int, people: int, now: int) -> None:
    batch = []
    for i in range(events):
        msg = realistic_event(i)
        msg["userId"] = f"user-{i % people:06d}"
        batch.append(normalize(msg, source_id="src_bench", received_ms=now))
        if len(batch) == 5000:
            await storage.log.append(batch)
            batch = []
    if batch:
        await storage.log.append(batch)


async def raw_scan(storage: SQLiteStorage) -> tuple[int, float]:
    decode = msgspec.json.Decoder().decode
    start, after, seen = time.perf_counter(), 0, 0
    while True:
        rows = await storage.log.read(after, 20_000)
        if not rows:
            break
        for row in rows:
            decode(row.body)
        seen += len(rows)
        after = rows[-1].seq
    return seen, time.perf_counter() - start


class LiveEvents:
    """The live events. Templates are made before the clock starts: the SDKs that send
    them run elsewhere, and making each event in the loop (about a tenth of the
    process's CPU per event) would slow the engine under test. Each event is a template's
    JSON body decoded (the collector's own work, with normalize and the append) with its
    person, ids and sometimes its name drawn afresh; made ahead, a 20 s run's 100,000
    events held 50-100 MiB, counted in the peak RSS, which is meant to be the engine's."""

    TEMPLATES = 5_000

    def __init__(self, people: int) -> None:
        self._rnd = random.Random(7)
        self._templates = [msgspec.json.encode(realistic_event(self._rnd.randrange(1 << 30)))
                           for _ in range(self.TEMPLATES)]
        self._people = people
        self._made = 0
        self._decode = msgspec.json.Decoder().decode

    def next(self) -> dict:
        n, rnd = self._made, self._rnd
        self._made += 1
        msg = self._decode(self._templates[n % self.TEMPLATES])
        msg["userId"] = f"user-{rnd.randrange(self._people):06d}"
        msg["anonymousId"] = f"anon-live-{n}"
        msg["messageId"] = f"live-{n}"
        if rnd.random() < 0.1:
            msg["event"] = "Order Completed"
        return msg


async def live(storage: SQLiteStorage, engine: SegmentEngine, made: LiveEvents, rate: float,
               seconds: float) -> tuple[list[float], int, int]:
    """Append ``rate`` events/s for ``seconds`` while the engine runs; the delays from
    each batch's commit to the follower's checkpoint passing it (until then, the
    memberships it changes are not stored), the achieved rate and the events sent."""
    stop = asyncio.Event()
    runner = asyncio.create_task(engine.run(stop))
    pending: list[tuple[int, float]] = []
    delays: list[float] = []
    tick = 0.05
    per_tick = max(1, int(rate * tick))

    async def watch() -> None:
        while not stop.is_set():
            done = storage.segments.checkpoint()
            now = time.perf_counter()
            while pending and pending[0][0] <= done:
                delays.append(now - pending.pop(0)[1])
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    sent = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        now_ms = int(time.time() * 1000)
        batch = []
        for _ in range(per_tick):
            msg = made.next()
            msg["timestamp"] = format_ms(now_ms)
            batch.append(normalize(msg, source_id="src_bench", received_ms=now_ms))
        result = await storage.log.append(batch)
        pending.append((storage.log.last_seq(), time.perf_counter()))
        sent += len(batch)
        del result
        due = start + (sent / rate)
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
    wall = time.perf_counter() - start
    deadline = time.perf_counter() + 30
    while pending and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    if pending:
        # Counted as what they waited so far (a lower bound), not left out of the p99.
        print(f"  (still {len(pending)} batches behind 30 s after the ingest stopped)")
        now = time.perf_counter()
        delays += [now - sent_at for _, sent_at in pending]
        pending.clear()
    stop.set()
    storage.log.release_waiters()
    await asyncio.gather(runner, watcher)
    return delays, int(sent / wall), sent


class Head(msgspec.Struct):
    """What an appended event's record needs besides its body."""

    type: str
    messageId: str  # noqa: N815 - the event's own field names
    event: str | None = None
    userId: str | None = None  # noqa: N815
    anonymousId: str | None = None  # noqa: N815


def snapshot(storage: SQLiteStorage, into: Path) -> SQLiteSegmentStore:
    """A copy of the segment store as it is now (the build's rows, before the live step
    changes some), read back after the live step: held in memory meanwhile, they would
    count in its peak RSS."""
    source = sqlite3.connect(storage.data_dir / FILES["segments"])
    copy = sqlite3.connect(into)
    try:
        source.backup(copy, pages=1024)  # a step at a time: bounded memory
    finally:
        copy.close()
        source.close()
    return SQLiteSegmentStore(into)


async def outputs_alone(storage: SQLiteStorage, after: int, upto: int,
                        built: SQLiteSegmentStore, ids: list[str], people: int,
                        ) -> tuple[int, float, int, float]:
    """Append the events ``(after, upto]`` of ``storage``'s log (a build's Audience
    events) and store the rows of segments ``ids`` of ``built`` (its rows) into a fresh
    store, in the build's number of batches; returns (events, append seconds, rows,
    store seconds). A fresh store's indexes are smaller than those of the log built
    over: a lower bound."""
    head = msgspec.json.Decoder(Head).decode
    events: list[NewEvent] = []
    while after < upto:
        read = await storage.log.read(after, 20_000, upto_seq=upto)
        if not read:
            break
        for row in read:
            h = head(row.body)
            events.append(NewEvent(COMPUTED_SOURCE_ID, h.type, h.messageId, h.event, h.userId,
                                   h.anonymousId, row.ts_ms, row.ts_ms, row.body))
        after = read[-1].seq
    rows = sorted((r for sid in ids for r in built.rows(sid)),
                  key=lambda r: r.person_id)
    batches = max(1, -(-people // BATCH))
    with tempfile.TemporaryDirectory() as tmp:
        scratch = SQLiteStorage(Path(tmp), synchronous="NORMAL", on_commit=None)
        try:
            for sid in ids:
                scratch.segments.create(storage.segments.get(sid))
            start = time.perf_counter()
            size = -(-len(events) // batches)
            for n in range(0, len(events), size):
                await scratch.log.append(events[n:n + size])
            appended = time.perf_counter() - start
            start = time.perf_counter()
            size = -(-len(rows) // batches)
            for n in range(0, len(rows), size):
                await asyncio.to_thread(scratch.segments.apply, rows[n:n + size])
            stored = time.perf_counter() - start
        finally:
            scratch.close()
    return len(events), appended, len(rows), stored


async def restarted(storage: SQLiteStorage, saved: Path | None) -> float:
    """Seconds a new engine (a server's start) takes to have its running state: by a scan
    of the log, or (``saved``) from the state a stop saved there."""
    engine = SegmentEngine(storage, saved_state=saved)
    start = time.perf_counter()
    await engine.take_saved()
    await engine.prepare()
    elapsed = time.perf_counter() - start
    if saved is not None and saved.exists():
        raise SystemExit("the saved state was not taken up")
    return elapsed


async def main(events: int, people: int, segments: int, rate: float, seconds: float) -> None:
    heap.settle()  # as the server does at start (app/lifecycle.py)
    with tempfile.TemporaryDirectory() as tmp:
        storage = SQLiteStorage(Path(tmp), synchronous="NORMAL", on_commit=None)
        try:
            now = int(time.time() * 1000)
            await fill(storage, events, people, now)
            print(f"log: {events:,} events of {people:,} people; peak RSS "
                  f"{peak_rss_mib():.0f} MiB")

            seen, scan = await raw_scan(storage)
            raw = seen / scan
            print(f"raw scan: {raw:,.0f} events/s ({scan:.2f} s)")

            engine = SegmentEngine(storage)
            engine.ensure_source()
            # As in a running server, the follower has taken the log in before the
            # segments are made (with none to keep, it only moves its checkpoint); else
            # it would re-evaluate every person of the log after the build, untimed.
            while await engine.catch_up_once():
                pass
            ids = []
            for n, definition in enumerate(DEFINITIONS[:segments]):
                storage.segments.create(Segment(f"seg_{n}", f"bench-{n}", f"Bench {n}",
                                                definition, created_ms=now))
                ids.append(f"seg_{n}")
            before_build = storage.log.last_seq()
            start, cpu = time.perf_counter(), time.process_time()
            built = await engine.build_many(ids)
            build = time.perf_counter() - start
            cpu = time.process_time() - cpu
            for seg in built:
                print(f"  {seg.key}: {storage.segments.count_members(seg.id):,} members, "
                      f"{seg.state}")
            rate_log = events / build
            print(f"build {segments} segment(s) in one scan: {build:.2f} s, "
                  f"{rate_log:,.0f} log events/s ({rate_log * segments:,.0f} "
                  f"segment-events/s), ratio to raw scan {rate_log / raw:.3f}; CPU "
                  f"{cpu:.2f} s ({events / cpu:,.0f} events per CPU second); peak RSS "
                  f"{peak_rss_mib():.0f} MiB")
            after_build = storage.log.last_seq()
            built_rows = snapshot(storage, Path(tmp) / "built-segments.db")

            # The build's Audience events are in the log: the follower takes them in first.
            while await engine.catch_up_once():
                pass
            made = LiveEvents(people)
            cpu = time.process_time()
            delays, achieved, sent = await live(storage, engine, made, rate, seconds)
            cpu = time.process_time() - cpu
            print(f"live: {achieved:,} events/s for {seconds:g} s; membership update delay "
                  f"p50 {percentile(delays, 0.5):.3f} s, p99 {percentile(delays, 0.99):.3f} s"
                  f" ({len(delays)} batches); CPU {cpu * 1e6 / max(1, sent):.0f} µs per "
                  f"live event (collector's decode, normalize and append, and engine); peak RSS "
                  f"{peak_rss_mib():.0f} MiB; load average {os.getloadavg()[0]:.1f}")

            # A restart: the follower's state made by a scan of the log, against taken up
            # from the state the stop saved (segments/saved_state.py).
            saved = Path(tmp) / saved_state.FILE
            engine.saved_state = saved
            start = time.perf_counter()
            engine.save_state()
            saving, size = time.perf_counter() - start, saved.stat().st_size
            scanned = await restarted(storage, None)
            taken = await restarted(storage, saved)
            print(f"restart: the follower's state made by a scan of the log in {scanned:.2f} s;"
                  f" taken up from the state the stop saved ({size / 2**20:.1f} MiB, saved in"
                  f" {saving:.2f} s) in {taken:.2f} s, ratio {taken / scanned:.3f}")

            # Last: reading the outputs back would count in the peak RSS printed above.
            n_events, appended, n_rows, stored = await outputs_alone(
                storage, before_build, after_build, built_rows, ids, people)
            built_rows.close()
            print(f"the build's outputs alone, into a fresh store: {n_events:,} Audience "
                  f"events appended in {appended:.2f} s, {n_rows:,} membership rows stored "
                  f"in {stored:.2f} s: those writes alone cap a build at "
                  f"{events / (appended + stored):,.0f} log events/s (ratio to raw scan "
                  f"{events / (appended + stored) / raw:.3f}), before any scan or "
                  f"evaluation")
        finally:
            storage.close()


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--segments", type=int, default=10)
    parser.add_argument("--live-rate", type=float, default=5000.0)
    parser.add_argument("--live-seconds", type=float, default=20.0)
    add_quick_option(parser)
    args = parser.parse_args()
    if args.quick:
        args.events, args.people, args.live_seconds = 3_000, 300, 1.0
    asyncio.run(main(args.events, args.people, min(args.segments, len(DEFINITIONS)),
                     args.live_rate, args.live_seconds))
