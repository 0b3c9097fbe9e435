"""``millpond serve`` subprocesses for the lifecycle tests, with stdout and stderr apart.

Why not ``tests.support.server.ServerProcess``: it sends both streams to one file and waits on
``/healthz``; these tests need the log (stderr) alone, parsed line by line, and the
moment stdout says "serving on".
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.support.server import ADMIN_TOKEN, free_port

SERVING = re.compile(r"millpond serving on (http://\S+) \(data: (.+)\)")


def serve_command(data_dir: Path, port: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "millpond.cli.main", "serve", "--port", str(port),
            "--data", str(data_dir), *args]


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "MILLPOND_ADMIN_TOKEN": ADMIN_TOKEN, **extra}


class Served:
    """One ``millpond serve`` process; ``out``/``err`` are its stdout/stderr files."""

    def __init__(self, data_dir: Path, *args: str, port: int | None = None,
                 extra_env: dict[str, str] | None = None):
        self.data_dir = data_dir
        self.port = free_port() if port is None else port
        self.args = args
        self.extra_env = extra_env or {}
        n = len(list(data_dir.parent.glob(f"{data_dir.name}-*.out")))
        self.out = data_dir.parent / f"{data_dir.name}-{n}.out"
        self.err = data_dir.parent / f"{data_dir.name}-{n}.err"
        self.proc: subprocess.Popen | None = None
        self.url: str | None = None

    def start(self) -> Served:
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(serve_command(self.data_dir, self.port, *self.args),
                                         env=env(**self.extra_env), stdout=out, stderr=err)
        return self

    def wait_serving(self, timeout: float = 60.0) -> str:
        """The URL of the "serving on" line, once stdout has it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = SERVING.search(self.out.read_text())
            if found:
                self.url = found.group(1)
                return self.url
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}: "
                                     f"{self.err.read_text()}")
            time.sleep(0.02)
        raise AssertionError(f"no 'serving on' line after {timeout}s: {self.err.read_text()}")

    @property
    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url,
                            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)

    def lines(self) -> list[str]:
        return self.err.read_text().splitlines()

    def records(self) -> list[dict]:
        """Every stderr line as JSON (the server runs with ``--log-format json``)."""
        return [json.loads(line) for line in self.lines()]

    def wait_record(self, match: Callable[[dict], Any], timeout: float = 60.0,
                    what: str = "log record") -> dict:
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.records() if match(r)]
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} after {timeout}s; log:\n"
                                     + "\n".join(self.lines()))
            time.sleep(0.05)

    def stop(self) -> int | None:
        """SIGTERM, wait for the graceful exit; the exit status (None if not started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def phase(name: str, **fields: Any) -> Callable[[dict], bool]:
    """Matches a JSON record with ``phase == name`` and the given fields."""
    return lambda r: r.get("phase") == name and all(r.get(k) == v for k, v in fields.items())
