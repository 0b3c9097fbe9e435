"""``millpond serve`` processes on the local cluster's engines, as ``millpond dev-cluster``
starts them: what a scaled-out millpond looks like, on one machine.

Why processes started like any other (``python -m millpond.cli.main serve``), each with a
data dir of its own under the cluster's temp dir: that is how real hosts run it (the data
dir holds only the lock and the admin-token file), and :meth:`MillpondProcesses.stop` can
stop exactly these, by PID. With ``archive`` (``s3://bucket/prefix`` on the cluster's
moto, ``archive_endpoint``) they keep the log's sealed ranges as Parquet files there, as a
real cluster does on S3; ``env`` carries the bucket's credentials. They share one admin
token (``MILLPOND_ADMIN_TOKEN``, made up when not set) because any of them may answer an
admin request. Each runs in its own
session, so a Ctrl-C in the terminal reaches only ``dev-cluster``, which stops them cleanly
(SIGTERM: pumps checkpoint, leases are given up) before the engines they need.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from millpond.devcluster.ports import free_ports

__all__ = ["MillpondProcesses"]


@dataclass
class MillpondProcesses:
    """``count`` ``millpond serve --log … --state …`` processes on free loopback ports."""

    servers: str
    state: str
    root: Path
    count: int = 2
    archive: str = ""
    archive_endpoint: str = ""
    archive_range: int = 0
    env: dict[str, str] = field(default_factory=dict)
    admin_token: str = field(
        default_factory=lambda: os.environ.get("MILLPOND_ADMIN_TOKEN")
        or secrets.token_urlsafe(24))
    ports: list[int] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.ports]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.poll() is None]

    def log_path(self, i: int) -> Path:
        return self.root / f"millpond-{i + 1}.log"

    def start(self, timeout: float = 120) -> MillpondProcesses:
        """Start every process and wait until each answers ``/healthz``; if one exits
        first, stop the others and raise with the last line of its log."""
        self.ports = free_ports(self.count)
        env = {**os.environ, **self.env, "MILLPOND_ADMIN_TOKEN": self.admin_token}
        archive = [] if not self.archive else [
            "--archive", self.archive, "--archive-endpoint", self.archive_endpoint,
            *(["--archive-range", str(self.archive_range)] if self.archive_range else [])]
        for i, port in enumerate(self.ports):
            data = self.root / f"millpond-{i + 1}"
            data.mkdir(parents=True, exist_ok=True)
            with self.log_path(i).open("ab") as log:
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-m", "millpond.cli.main", "serve", "--port", str(port),
                     "--data", str(data), "--log", self.servers, "--state", self.state, *archive],
                    env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True))
        try:
            self._wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for i, (proc, url) in enumerate(zip(self.procs, self.urls, strict=True)):
            while not _healthy(url, proc.pid):
                if proc.poll() is not None:
                    lines = self.log_path(i).read_text(errors="replace").strip().splitlines()
                    raise RuntimeError(f"millpond serve on {url} exited: "
                                       f"{lines[-1] if lines else 'no output'}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"millpond serve on {url} did not answer in "
                                       f"{timeout:.0f}s; see {self.log_path(i)}")
                time.sleep(0.1)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM each (a clean stop), SIGKILL what is still running after ``timeout``.
        Idempotent."""
        running = [p for p in self.procs if p.poll() is None]
        for proc in running:
            os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in running:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)


def _healthy(url: str, pid: int) -> bool:
    """``url`` answers and it is process ``pid`` (another process may hold the port)."""
    try:
        health = httpx.get(f"{url}/healthz", timeout=2)
        return health.status_code == 200 and health.json().get("pid") == pid
    except (httpx.HTTPError, ValueError):
        return False
