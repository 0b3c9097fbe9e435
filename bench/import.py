"""Benchmark the CSV people import: raw csv parse rate vs the full pipeline.

    .venv/bin/python bench/import.py [--rows N] [--runs 3]
    .venv/bin/python bench/import.py --rows 10000000 --runs 1        # the 10M / RSS check
    .venv/bin/python bench/import.py --archive-range 0               # all hot, no archive
    .venv/bin/python bench/import.py --url http://127.0.0.1:8787 --write-key KEY
    .venv/bin/python bench/import.py --rows 1000000 --archive-range 250000 --vs-hot

(a) baseline: ``csv.reader`` over the file doing nothing with the rows -- the
    ceiling for any stdlib-csv importer;
(b) pipeline: ``run_import`` (UTF-8 check + fingerprint pass, rows → identify
    events with a timestamp column and type inference, batching, checkpoints)
    into the log (default, ``--sink log``: the collector's validation and a durable
    group commit into a fresh SQLite log, as ``POST /api/imports`` does; the rows are
    read, converted and validated in the import's reader process while this one
    commits), into a sink that only encodes each batch with msgspec (``--sink
    encode``), or into a live server's ``/v1/import`` with ``--url``.

``--vs-hot`` (with ``--archive-range``) runs each pipeline run twice in a row, all-hot
then with archiving on, and reports both medians and their ratio (the cost of archiving
measured in the same sitting), with the disk used per event by each tier.

Each pipeline run happens in a fresh subprocess so its peak RSS (``ru_maxrss``) is
its own. With the log sink the import also runs a reader process, and with archiving the
storage a sealing process: their peaks are reported too, and the peak RSS is the sum of
the three (an upper bound of what they held at once). Reports medians, the ratio b/a and
the peak RSS; and per run, the CPU seconds per million rows of each thread and of each
child process (a loaded machine
inflates them far less than rows/s: compare versions by them), and each data-dir file's
bytes per stored event (hot ``log.db`` with its WAL and dedupe keys, the per-person
index, the archive).
Target: (b) ≥ 50,000 rows/s; peak RSS < 300 MB for 10M rows.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_quick_option  # noqa: E402

#: The server's default range (``storage.archive_range``): the import the issue measures
#: runs with archiving on.
ARCHIVE_RANGE = 1_000_000
TARGET_ROWS_PER_S = 50_000
TARGET_PEAK_MB = 300
HEADER = ["id", "email", "name", "plan", "age", "vip", "signed_up", "city", "score",
          "updated_at"]
PLANS = ["free", "pro", "team", "enterprise"]
CITIES = ["Paris", "Berlin", "Lisbon", "Oslo", "Austin", "Osaka", "Lagos", "Lima"]


def generate(path: Path, rows: int, seed: int = 1) -> int:
    """Write a realistic people CSV (~120 bytes a row); return its size in bytes."""
    rng = random.Random(seed)
    base = 1_600_000_000
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(",".join(HEADER) + "\n")
        lines = []
        for i in range(rows):
            ts = base + rng.randrange(100_000_000)
            lines.append(
                f"u{i},user{i}@example.com,Person {i},{PLANS[i % 4]},{18 + i % 60},"
                f"{'true' if i % 3 else 'false'},2023-{1 + i % 12:02d}-{1 + i % 28:02d},"
                f"{CITIES[i % 8]},{i % 1000 / 10},{ts}\n"
            )
            if len(lines) == 10_000:
                out.writelines(lines)
                lines.clear()
        out.writelines(lines)
    return path.stat().st_size


def raw_parse(path: Path) -> tuple[int, float]:
    started = time.perf_counter()
    count = 0
    with path.open(encoding="utf-8", newline="") as handle:
        for _ in csv.reader(handle):
            count += 1
    return count - 1, time.perf_counter() - started


def child_pipeline(path: Path, url: str | None, write_key: str | None,
                   sink_kind: str = "log", archive_range: int = 0) -> dict[str, Any]:
    """One pipeline run (in a subprocess): rows, seconds, peak and baseline RSS."""
    import msgspec

    from millpond.backfill import HttpSink, ImportOptions, SinkResult, run_import

    class EncodingSink:
        """Encodes each batch like the HTTP sink does, then drops it."""

        def __init__(self) -> None:
            self.encode = msgspec.json.Encoder().encode
            self.bytes = 0

        def send(self, events: list[dict[str, Any]]) -> SinkResult:
            self.bytes += len(self.encode({"batch": events}))
            return SinkResult(len(events))

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tiers: list[dict[str, Any]] = []
    files: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as state:
        options = ImportOptions(kind="people", timestamp_column="updated_at", resume=False,
                                state_dir=Path(state), errors_path=Path(state) / "errors.csv",
                                source="bench")
        storage = None
        if url:
            sink: Any = HttpSink(url, write_key)
        elif sink_kind == "encode":
            sink = EncodingSink()
        else:
            from millpond.backfill.log_sink import LogSink
            from millpond.storage import StorageConfig, open_storage

            storage = open_storage(StorageConfig(data_dir=str(Path(state) / "data"),
                                                 archive_range=archive_range))
            sink = LogSink(storage.log, "src_bench")
        started = time.perf_counter()
        cpu_before, threads_before = _cpu_seconds(), _thread_cpu()
        children = ChildPeaks()
        summary = run_import(path, options, sink)
        seconds = time.perf_counter() - started
        # The reader process is reaped when the import ends, the archive's sealing
        # process only when the storage closes: here the children's CPU is the reader's.
        reader_cpu = _children_cpu()
        # CPU by thread before the storage's threads stop: what each part costs, which
        # (unlike rows/s) hardly depends on how loaded the machine is. Less what each had
        # used before the import (the main thread's imports, the storage's opening).
        threads = {name: cpu - threads_before.get(name, 0.0)
                   for name, cpu in _thread_cpu().items()}
        # The import's peak, before the check below reads the whole log through a
        # connection of its own (whose page cache is the bench's, not the import's).
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if storage is not None:
            import asyncio

            from millpond.storage.models import Window

            everything = Window(-(1 << 62), 1 << 62)
            stored = asyncio.run(storage.index.count(everything))
            tiers = [msgspec.structs.asdict(t) for t in storage.tiers()]
            # Every file of the data dir (the per-person index is not a tier's but
            # grows with every event too), bytes per stored event.
            files = {name: size / max(stored, 1)
                     for name, size in getattr(storage, "sizes", dict)().items()}
            storage.close()
            assert stored == summary.events_accepted, "log count differs from accepted"
        child_peaks = children.stop()
    own = _cpu_seconds() - cpu_before
    threads["reader process"] = reader_cpu
    threads["sealer process"] = _children_cpu() - reader_cpu
    reader, sealer = child_peaks.get("reader", 0), child_peaks.get("sealer", 0)
    return {"rows": summary.rows_read, "accepted": summary.events_accepted,
            "rejected": summary.rows_rejected, "duplicates": summary.duplicates,
            "seconds": seconds, "peak_rss_kb": peak + reader + sealer,
            "importer_rss_kb": peak,
            "reader_rss_kb": reader, "sealer_rss_kb": sealer, "baseline_rss_kb": baseline,
            "tiers": tiers, "files": files, "thread_cpu": threads,
            "cpu_seconds": own + threads["reader process"] + threads["sealer process"]}


def _children_cpu() -> float:
    """CPU seconds of the reaped child processes."""
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    return reaped.ru_utime + reaped.ru_stime


class ChildPeaks:
    """The peak RSS (``VmHWM``) of this process's children by role, sampled from
    ``/proc`` while they run (Linux; nothing elsewhere): the archive's sealing process
    (named ``millpond-sealer``) and the import's reader process.

    Why not ``RUSAGE_CHILDREN``: a child started by fork + exec (both are ``spawn``
    children) is charged, in ``ru_maxrss``, with the RSS it had between the two, which
    is the whole importer's: it reported the importer's size whenever that was larger
    than the child's own peak. ``VmHWM`` starts afresh at exec, so it is the child's own
    once its command line is the spawned interpreter's."""

    def __init__(self, every: float = 0.05):
        import os
        import threading

        self._peaks: dict[str, tuple[str, int]] = {}  # pid: (role, peak KiB)
        self._pid = os.getpid()
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _children(self) -> list[str]:
        out: list[str] = []
        for task in Path(f"/proc/{self._pid}/task").glob("*/children"):
            try:
                out += task.read_text().split()
            except OSError:
                continue
        return out

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            for pid in self._children():
                try:
                    # Between its fork and its exec a child is still a copy of this
                    # process (with this process's RSS): only a started spawn child counts.
                    if b"spawn_main" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                        continue
                    comm = Path(f"/proc/{pid}/comm").read_text().strip()
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                role = "sealer" if comm == "millpond-sealer" else "reader"
                for line in status.splitlines():
                    if line.startswith("VmHWM:"):
                        seen = self._peaks.get(pid, (role, 0))[1]
                        self._peaks[pid] = (role, max(seen, int(line.split()[1])))

    def stop(self) -> dict[str, int]:
        """Stop sampling; per role, the sum of its processes' peaks, KiB (an upper bound
        of what they held at once, as the importer's and the children's sum is)."""
        self._stop.set()
        self._thread.join()
        out: dict[str, int] = {}
        for role, peak in self._peaks.values():
            out[role] = out.get(role, 0) + peak
        return out


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of each live thread of this process, by its name
    (Linux ``/proc/self/task/<tid>/stat``; empty elsewhere)."""
    import os
    import threading

    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for thread in threading.enumerate():
        try:
            fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
        except OSError:
            continue
        utime, stime = fields.rsplit(")", 1)[1].split()[11:13]
        name = thread.name.removeprefix("millpond-")
        out[name] = out.get(name, 0.0) + (int(utime) + int(stime)) / tick
    return out


def run_child(path: Path, url: str | None, write_key: str | None,
              sink_kind: str, archive_range: int = 0) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", str(path), "--sink", sink_kind,
               "--archive-range", str(archive_range)]
    if url:
        command += ["--url", url, "--write-key", write_key or ""]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"pipeline run failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--url", help="run (b) against a live server's /v1/import")
    parser.add_argument("--write-key", help="write key of an import/pipelines source")
    parser.add_argument("--sink", choices=["log", "encode"], default="log",
                        help="where (b) writes without --url (default: a fresh SQLite log)")
    parser.add_argument("--archive-range", type=int, default=ARCHIVE_RANGE,
                        help="with the log sink: archive every N events to Parquet while "
                             f"importing (default: the server's, {ARCHIVE_RANGE:,}; 0: off)")
    parser.add_argument("--vs-hot", action="store_true",
                        help="with --archive-range: alternate all-hot and archiving runs "
                             "and report their ratio")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    add_quick_option(parser)
    args = parser.parse_args()
    if args.quick:
        args.rows, args.runs = 2_000, 1
    if args.child:
        print(json.dumps(child_pipeline(Path(args.child), args.url, args.write_key,
                                          args.sink, args.archive_range)))
        return
    if args.url and not args.write_key:
        parser.error("--url needs --write-key")
    if args.vs_hot and (not args.archive_range or args.url or args.sink != "log"):
        parser.error("--vs-hot needs archiving on and the log sink")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "people.csv"
        parse_rates, pipe_rates, peaks, growth, readers, sealers = [], [], [], [], [], []
        cpus: list[float] = []
        hot_rates: list[float] = []
        for run in range(1, args.runs + 1):
            # Against a server, each run gets different content (so new messageIds):
            # re-sending the same file would measure the server's dedupe path instead.
            if run == 1 or args.url:
                started = time.perf_counter()
                size = generate(path, args.rows, seed=run)
                print(f"generated {args.rows:,} rows, {size / 1e6:,.0f} MB "
                      f"in {time.perf_counter() - started:.1f} s")
            rows, seconds = raw_parse(path)
            assert rows == args.rows, rows
            parse_rates.append(rows / seconds)
            if args.vs_hot:
                hot = run_child(path, None, None, "log", 0)
                hot_rates.append(hot["rows"] / hot["seconds"])
                print(f"run {run}: all-hot pipeline {hot_rates[-1]:,.0f} rows/s")
                _print_tiers(hot["tiers"], hot.get("files", {}))
            result = run_child(path, args.url, args.write_key, args.sink, args.archive_range)
            if result["rows"] != args.rows or result["rejected"]:
                raise SystemExit(f"pipeline miscounted: {result}")
            pipe_rates.append(result["rows"] / result["seconds"])
            peaks.append(result["peak_rss_kb"] / 1024)
            readers.append(result["reader_rss_kb"] / 1024)
            sealers.append(result["sealer_rss_kb"] / 1024)
            growth.append((result["importer_rss_kb"] - result["baseline_rss_kb"]) / 1024)
            print(f"run {run}: parse {parse_rates[-1]:,.0f} rows/s, "
                  f"pipeline {pipe_rates[-1]:,.0f} rows/s, peak RSS {peaks[-1]:,.0f} MB "
                  f"(reader process {readers[-1]:,.0f} MB, "
                  f"sealer process {sealers[-1]:,.0f} MB)")
            cpus.append(result["cpu_seconds"] / result["rows"] * 1e6)
            _print_cpu(result)
            _print_tiers(result["tiers"], result.get("files", {}))

    a, b = statistics.median(parse_rates), statistics.median(pipe_rates)
    sink = ("HttpSink to the server" if args.url else
            "into the SQLite log" if args.sink == "log" else "msgspec-encoding sink")
    if args.archive_range and not args.url:
        sink = "into the log + archive"
    table = [
        ("(a) raw csv.reader parse, rows/s", f"{a:,.0f}"),
        (f"(b) pipeline, {sink}, rows/s", f"{b:,.0f}"),
        ("ratio b/a", f"{b / a:.3f}"),
        ("(b) CPU seconds per 1M rows, all threads", f"{statistics.median(cpus):,.1f}"),
        *([("(h) same pipeline all-hot, rows/s", f"{statistics.median(hot_rates):,.0f}"),
           ("ratio b/h (archiving on / all-hot)",
            f"{b / statistics.median(hot_rates):.3f}")] if hot_rates else []),
        ("(b) peak RSS (importer + reader + sealer), MB", f"{statistics.median(peaks):,.0f}"),
        ("(b) of which the reader process, MB", f"{statistics.median(readers):,.0f}"),
        ("(b) of which the sealer process, MB", f"{statistics.median(sealers):,.0f}"),
        ("(b) importer's RSS growth over start, MB", f"{statistics.median(growth):,.0f}"),
    ]
    print(f"\n{'measure':<48}{'median':>14}")
    print("-" * 62)
    for label, value in table:
        print(f"{label:<48}{value:>14}")
    verdict = "meets" if b >= TARGET_ROWS_PER_S else "MISSES"
    where = f" ({args.url})" if args.url else ""
    print(f"\n{args.rows:,} rows, {args.runs} runs{where}; pipeline {verdict} the "
          f"{TARGET_ROWS_PER_S:,} rows/s target; peak RSS "
          f"{statistics.median(peaks):,.0f} MB (target for 10M rows: < {TARGET_PEAK_MB} MB)")


def _print_cpu(result: dict[str, Any]) -> None:
    """CPU seconds per 1M rows: all of it, then each thread's (the busy ones)."""
    per = 1e6 / result["rows"]
    parts = sorted(result["thread_cpu"].items(), key=lambda kv: -kv[1])
    print(f"  CPU {result['cpu_seconds'] * per:,.1f} s per 1M rows: "
          + ", ".join(f"{name} {cpu * per:,.1f}" for name, cpu in parts if cpu * per >= 0.1))
    # How far the archiver got by the end varies from run to run (it seals behind the
    # import, a range at a time): its cost per event it archived compares versions.
    archived = sum(t["events"] for t in result["tiers"] if t["name"] == "archive")
    if archived and "archiver" in result["thread_cpu"]:
        sealing = result["thread_cpu"]["archiver"] + result["thread_cpu"]["sealer process"]
        print(f"  archiving (archiver thread + sealer process): "
              f"{sealing / archived * 1e6:,.1f} CPU µs per archived event "
              f"({archived:,} archived by the import's end)")


def _print_tiers(tiers: list[dict[str, Any]], files: dict[str, float] | None = None) -> None:
    """Events, bytes and bytes per event of each tier the run left, then each file's
    bytes per stored event (hot and archive together)."""
    for tier in tiers:
        per = tier["bytes"] / tier["events"] if tier["events"] else 0
        print(f"  {tier['name']}: {tier['events']:,} events, "
              f"{tier['bytes'] / 1e6:,.0f} MB, {per:,.0f} B/event")
    if files:
        print("  on disk per stored event: " + ", ".join(
            f"{name} {per:,.0f} B" for name, per in files.items() if per >= 0.5))


if __name__ == "__main__":
    main()
