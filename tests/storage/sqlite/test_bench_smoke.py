"""``bench/dedupe.py --quick`` and ``bench/time_index.py --quick`` run every step, so the
benchmarks cannot rot unnoticed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_dedupe_bench_quick_runs_every_step():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "dedupe.py"), "--quick"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    for label in ("run 1 one table (wall", "run 1 recent+runs (wall", "bytes written"):
        assert label in out.stdout, out.stdout


def test_time_index_bench_quick_runs_every_step():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "time_index.py"), "--quick"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    for label in ("one part", "20 parts", "ratio 4 parts / one part"):
        assert label in out.stdout, out.stdout
