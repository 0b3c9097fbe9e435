"""moto's S3 server as a process on a loopback port: an S3-compatible API for the archive
in development, with no network and no account.

Why a process (``python -m moto.server``) rather than moto's in-thread server: the local
cluster stops what it started by PID, and a server in a process of its own survives
nothing of the command that started it when it is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from millpond.devcluster.ports import free_ports

__all__ = ["ACCESS_KEY", "REGION", "S3Server", "SECRET_KEY"]

#: moto accepts any credentials; these are the ones the cluster prints and tests use.
ACCESS_KEY = "testing-access-key"
SECRET_KEY = "testing-secret-key"
REGION = "us-east-1"


@dataclass
class S3Server:
    """``python -m moto.server`` on 127.0.0.1:``port``."""

    port: int = 0
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def start(self, timeout: float = 60) -> S3Server:
        try:
            import moto.server  # noqa: F401  (only to fail early with the fix)
        except ImportError as exc:
            raise RuntimeError("moto's server is not installed; install it with "
                               "`pip install 'moto[server]'` (`make setup` does)") from exc
        self.port = self.port or free_ports(1)[0]
        with (self.log_path or Path(os.devnull)).open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                httpx.get(f"{self.endpoint}/moto-api/", timeout=1)
                return self
            except httpx.HTTPError as exc:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"moto's S3 server exited ({self.proc.returncode})") from exc
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"moto's S3 server not answering after {timeout}s") from exc
                time.sleep(0.05)

    def stop(self, timeout: float = 15) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout)

    def credentials(self) -> dict[str, str]:
        """The environment that lets a ``millpond serve`` (boto3's default credential
        chain) reach this server's buckets."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_REGION": REGION}

    def client(self):  # -> botocore S3 client (boto3 ships no type stubs)
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name=REGION)
