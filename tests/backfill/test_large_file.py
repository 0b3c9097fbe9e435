"""A ~1 GB people CSV, generated on the fly, imports in constant memory with an exact count."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from millpond.backfill import ImportOptions, SinkResult, run_import

ROWS = 2_500_000
BIO = ("Enjoys long walks, short meetings and well-formed CSV files; collects vinyl, "
       "maps and \"quoted\" remarks, sometimes with commas, semicolons; and pipes | too. ") * 4
MAX_RSS_GROWTH = 100 * 1024 * 1024


def generate(path: Path, rows: int) -> None:
    """~400 bytes a row: ten short columns, a long quoted text column, a Unix timestamp."""
    plans = ("free", "pro", "team", "enterprise")
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("id,email,name,plan,age,vip,signed_up,city,score,bio,updated_at\n")
        chunk: list[str] = []
        for i in range(rows):
            start = i % 97
            bio = BIO[start:start + 300].replace('"', '""')
            chunk.append(
                f"u{i},user{i}@example.com,Person {i},{plans[i % 4]},{18 + i % 60},"
                f"{'true' if i % 3 else 'false'},2023-{1 + i % 12:02d}-{1 + i % 28:02d},"
                f"City {i % 500},{i % 1000 / 10},\"{bio}\",{1_600_000_000 + i}\n")
            if len(chunk) == 20_000:
                out.writelines(chunk)
                chunk.clear()
        out.writelines(chunk)


class CountingSink:
    """Counts and checks events, keeps none of them."""

    def __init__(self) -> None:
        self.events = 0
        self.row_sum = 0
        self.batches = 0

    def send(self, events: list[dict[str, Any]]) -> SinkResult:
        self.batches += 1
        self.events += len(events)
        self.row_sum += sum(e["context"]["import"]["row"] for e in events)
        return SinkResult(len(events))


class PeakRss(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process()
        self.baseline = self.process.memory_info().rss
        self.peak = self.baseline
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            self.peak = max(self.peak, self.process.memory_info().rss)


@pytest.mark.slow
def test_gigabyte_csv_imports_in_constant_memory(tmp_path):
    path = tmp_path / "people-1gb.csv"
    generate(path, ROWS)
    size = path.stat().st_size
    assert size > 0.95e9, f"generated only {size / 1e9:.2f} GB"

    sink = CountingSink()
    monitor = PeakRss()
    monitor.start()
    started = time.monotonic()
    summary = run_import(path, ImportOptions(timestamp_column="updated_at",
                                             state_dir=tmp_path / "state"), sink)
    elapsed = time.monotonic() - started
    monitor.stop.set()
    monitor.join()

    assert summary.rows_read == ROWS and summary.rows_rejected == 0
    assert sink.events == summary.events_accepted == ROWS
    # Rows 2..ROWS+1 each arrived exactly once (a sum check costs no memory).
    assert sink.row_sum == sum(range(2, ROWS + 2))
    growth = monitor.peak - monitor.baseline
    print(f"\n{size / 1e9:.2f} GB, {ROWS:,} rows in {elapsed:.1f} s "
          f"({ROWS / elapsed:,.0f} rows/s); peak RSS growth {growth / 1e6:.1f} MB")
    assert growth < MAX_RSS_GROWTH, f"RSS grew by {growth / 1e6:.0f} MB"
