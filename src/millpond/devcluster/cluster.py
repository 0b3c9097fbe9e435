"""The local cluster: the engines a scaled-out millpond runs on, started together on loopback.

Three ``nats-server`` with JetStream (the replicated log), a PostgreSQL (the state) and
moto's S3 server (the archive), each on free ports in temp dirs, started in parallel (the
slowest, PostgreSQL's ``initdb``, sets the pace). ``millpond dev-cluster`` and the test
suite's session fixture both use :class:`DevCluster`, so what developers run is what tests
run. :meth:`DevCluster.stop` stops exactly what :meth:`DevCluster.start` started, by PID,
and removes the temp dirs.
"""

from __future__ import annotations

import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from millpond.devcluster.nats import NatsCluster, find_nats_server
from millpond.devcluster.postgres import PostgresServer, find_pg_bin
from millpond.devcluster.s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server

__all__ = ["DevCluster"]


@dataclass
class DevCluster:
    """NATS (``nats_nodes`` nodes), PostgreSQL and S3 on loopback."""

    nats_nodes: int = 3
    root: Path | None = None
    nats: NatsCluster = field(init=False)
    postgres: PostgresServer = field(default_factory=PostgresServer)
    s3: S3Server = field(default_factory=S3Server)

    def __post_init__(self) -> None:
        self.nats = NatsCluster(self.nats_nodes)

    def start(self) -> DevCluster:
        """Start every engine; if one fails, stop the others and raise its error. A missing
        binary is found before anything starts."""
        find_nats_server()
        find_pg_bin()
        self.root = self.root or Path(tempfile.mkdtemp(prefix="millpond-cluster-"))
        self.nats.root = self.root / "nats"
        self.s3.log_path = self.root / "s3.log"
        with ThreadPoolExecutor(3) as pool:
            started = [pool.submit(self.nats.start), pool.submit(self.postgres.start),
                       pool.submit(self.s3.start)]
            errors = [f.exception() for f in started]
        failed = next((e for e in errors if e is not None), None)
        if failed is not None:
            self.stop()
            raise failed
        return self

    def describe(self) -> dict[str, Any]:
        """Where each engine listens, and the PIDs of what was started."""
        return {
            "nats": {"urls": self.nats.urls, "servers": self.nats.servers,
                     "pids": [n.pid for n in self.nats.nodes]},
            "postgresql": {"url": self.postgres.dsn(), "pid": self.postgres.pid},
            "s3": {"endpoint": self.s3.endpoint, "access_key": ACCESS_KEY,
                   "secret_key": SECRET_KEY, "region": REGION, "pid": self.s3.pid},
        }

    def stop(self) -> None:
        """Stop everything started (each by its PID) and remove the temp dirs. Idempotent."""
        try:
            self.s3.stop()
        finally:
            try:
                self.nats.destroy()
            finally:
                try:
                    self.postgres.destroy()
                finally:
                    if self.root is not None:
                        shutil.rmtree(self.root, ignore_errors=True)
                        self.root = None

    def __enter__(self) -> DevCluster:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
