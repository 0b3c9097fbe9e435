"""``bench/dedupe.py --quick`` and ``bench/time_index.py --quick`` run every step, so the
benchmarks cannot rot unnoticed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(("script", "labels"), [
    ("dedupe.py", ("run 1 one table (wall", "run 1 recent+runs (wall", "bytes written")),
    ("time_index.py", ("one part", "20 parts", "ratio 4 parts / one part",
                       "append, parts of   100,000", "ratio append parts of 100,000")),
])
def test_the_bench_quick_runs_every_step(script, labels):
    out = subprocess.run([sys.executable, str(ROOT / "bench" / script), "--quick"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    for label in labels:
        assert label in out.stdout, out.stdout
