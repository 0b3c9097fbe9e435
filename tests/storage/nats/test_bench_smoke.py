"""``bench/cluster.py``, ``bench/cluster_index.py``, ``bench/cluster_serve.py`` and
``bench/cluster_archive.py`` with ``--quick`` run every step, so the benchmarks cannot rot
unnoticed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.slow


def test_cluster_bench_quick_runs_every_step():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "cluster.py"), "--quick"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    for label in ("(a) embedded store", "(b) JetStream, 3 replicas", "(c) JetStream, 1 replica",
                  "(d) (b) + dedupe table", "read back", "ratio b/a", "ratio b/c", "ratio d/a",
                  "3 replicas + dedupe: publisher"):
        assert label in out.stdout, out.stdout


def test_cluster_index_bench_quick_runs_every_step():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "cluster_index.py"), "--quick"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    for label in ("(a) dedupe keys only", "(b) dedupe keys + index rows", "ratio b/a"):
        assert label in out.stdout, out.stdout


def test_cluster_archive_bench_quick_runs_every_step():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "cluster_archive.py"),
                          "--quick"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    for label in ("seal (stream -> Parquet on S3)", "read by seq", "window scan (all)",
                  "narrow window", "ratio b/a"):
        assert label in out.stdout, out.stdout


def test_cluster_serve_bench_quick_runs_every_step():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "cluster_serve.py"),
                          "--quick"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    for label in ("(E) embedded store, 1 process", "(C1) cluster, 1 process",
                  "(C2) cluster, 2 processes"):
        assert label in out.stdout, out.stdout
