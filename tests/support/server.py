"""A real ``millpond serve`` process on a free port, for tests that need the whole server.

The fixtures that start and stop these are in ``tests/conftest.py`` (``server``,
``server_factory``, ``shared_server``, ``admin``); use the class directly only for a
server with a lifetime no fixture gives (e.g. one per browser module).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ADMIN_TOKEN = "test-admin-token"
#: How long a server may take to answer ``/healthz``. Generous: it usually takes about a
#: second, but ``make test`` runs two test processes on a machine other jobs share, and a
#: starved start must not fail a test (a server that cannot start at all fails at once).
START_TIMEOUT = 120.0
#: Starts on a fresh port after another process took the one chosen (see ``start``).
PORT_ATTEMPTS = 3


class PortTaken(RuntimeError):
    """The server exited because its port was taken between choosing and binding it."""


def free_port() -> int:
    """A TCP port nothing listens on right now (bound once, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    """A ``millpond serve`` subprocess; ``admin`` is an httpx client with the admin token."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    extra_env: dict = field(default_factory=dict)
    #: More ``millpond serve`` options, e.g. ``["--public-url", "https://x.example"]``.
    args: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = START_TIMEOUT) -> ServerProcess:
        """Start and wait until ``/healthz`` answers.

        Why a retry: ``free_port`` releases the port it found, and under ``make test``'s
        parallel run another process (a server or fake of the other worker) can take it
        before this server binds it; the server then exits at once saying so, and a new
        free port is the fix, not a failed test. Only then: any other early exit fails."""
        for _ in range(PORT_ATTEMPTS - 1):
            try:
                return self._start(timeout)
            except PortTaken:
                self.port = free_port()
        return self._start(timeout)

    def _start(self, timeout: float) -> ServerProcess:
        env = {**os.environ, "MILLPOND_ADMIN_TOKEN": ADMIN_TOKEN, **self.extra_env}
        self.log_file = open(self.data_dir.parent / f"server-{self.port}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "millpond.cli.main", "serve", "--port", str(self.port),
             "--data", str(self.data_dir), *self.args],
            env=env, stdout=self.log_file, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log_file.close()
                log = Path(self.log_file.name).read_text(errors="replace")
                if f"port {self.port} on 127.0.0.1 is already in use" in log:
                    raise PortTaken(self.port)
                raise RuntimeError(f"server exited early; see {self.log_file.name}")
            try:
                health = httpx.get(f"{self.url}/healthz", timeout=2)
                # Only this server: another one that took the port (the other worker's)
                # answers too, and this one then exits saying the port is in use.
                if health.status_code == 200 and health.json().get("pid") == self.proc.pid:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not start in {timeout}s; see {self.log_file.name}")

    @property
    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url,
                            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)

    def create_source(self, name: str, kind: str = "pipelines", **extra) -> dict:
        with self.admin as c:
            r = c.post("/api/sources", json={"name": name, "kind": kind, **extra})
            r.raise_for_status()
            return r.json()

    def events(self, **params) -> list[dict]:
        """Every stored event matching ``params``, following cursors to the end."""
        out: list[dict] = []
        cursor = None
        with self.admin as c:
            while True:
                r = c.get("/api/events", params={**params, "limit": 1000,
                                                 **({"cursor": cursor} if cursor else {})})
                r.raise_for_status()
                page = r.json()
                out.extend(page["events"])
                if len(page["events"]) < 1000:
                    return out
                cursor = page["next_cursor"]

    def kill(self) -> None:
        """SIGKILL: no chance to flush anything."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM and wait for a graceful exit (in-flight commits finish)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if getattr(self, "log_file", None):
            self.log_file.close()

