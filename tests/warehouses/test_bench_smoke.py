"""``bench/warehouse.py --quick`` runs every step, so the benchmark cannot rot unnoticed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_warehouse_bench_quick_runs_every_step():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "warehouse.py"), "--quick"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    for label in ("(a) postgres loader", "(b) raw COPY, same rows", "ratio a/b",
                  "(c) parquet, local dir", "peak RSS"):
        assert label in out.stdout, out.stdout
