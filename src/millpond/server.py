"""The composition root: one process, embedded stores, collector, admin API and pumps.

Everything that needs the data dir is opened here (the stores through
:func:`millpond.storage.open_storage`) and handed to the parts that use it, so each part
can be tested with its own temporary stores.
"""

from __future__ import annotations

import errno
import importlib.metadata
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

import uvicorn

from millpond import datadir, datalock
from millpond.api.app import build_api
from millpond.app.config import ServerConfig
from millpond.app.http import guarded_protocol
from millpond.backfill.jobs import ImportJobs
from millpond.collector.app import CollectorApp
from millpond.collector.public_url import PublicAddress
from millpond.config import admin_token
from millpond.connections import metrics as delivery_metrics
from millpond.connections.service import PumpManager
from millpond.delivery.retry import RetryPolicy
from millpond.humanize import human_bytes
from millpond.profiles.follower import ProfileFollower
from millpond.replays.service import ReplayManager
from millpond.sources.service import SourceService
from millpond.storage import open_storage
from millpond.timeutil import human_duration

log = logging.getLogger("millpond.server")


class Millpond:
    """A millpond server's parts on one data dir; ``asgi`` is what uvicorn serves.

    ``config`` is validated already (:func:`millpond.app.load_config`); each part gets
    the values it needs from it here, so no other module reads the environment."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.data_dir = Path(config.storage.data_dir)
        #: How clients reach this server: browser SDK settings and snippets name it.
        self.public = PublicAddress.from_options(config.public_url, config.trust_proxy)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.admin_token, self.token_generated = admin_token(self.data_dir, config.admin_token)
        self.storage = storage = open_storage(config.storage,
                                              max_pending=config.log_writer.max_pending,
                                              max_group=config.log_writer.max_group)
        self.log = storage.log
        self.sources = SourceService(storage.sources)
        self.profiles = storage.profiles
        self.profile_follower = ProfileFollower(storage.log, storage.profiles)
        self.imports = ImportJobs(storage.imports, storage.log, self.data_dir)
        delivery = config.delivery
        self.pumps = PumpManager(storage.log, storage.destinations, storage.runs,
                                 timeout=delivery.timeout,
                                 policy=RetryPolicy(base=delivery.retry_base,
                                                    cap=delivery.retry_cap))
        self.replays = ReplayManager(self.pumps, self.sources, storage.runs, storage.index)
        delivery_metrics.install(self.pumps)
        self._background: list = []
        self.api = build_api(self)
        self.asgi = CollectorApp(storage.log, storage.rejections, self.sources, self.api,
                                 self.public)

    def extra_routers(self) -> list:
        """Routers of the layers built on the log (destinations, replays, people, imports)."""
        from millpond.api import dead_letters, destinations, imports, people, replays

        return [people.router, destinations.router, dead_letters.router, imports.router,
                replays.router]

    def refresh_metrics(self) -> None:
        """Gauges computed at scrape time (lag per destination and so on)."""

    async def start(self) -> None:
        """Start background work (pumps, profile follower) once the event loop runs."""
        await self.pumps.start()
        import asyncio

        self._background.append(asyncio.create_task(self.profile_follower.run()))

    async def stop(self) -> None:
        """Stop background work, then finish in-flight commits and close the stores."""
        await self.pumps.stop()
        for task in self._background:
            task.cancel()
        self.close()

    def close(self) -> None:
        self.replays.close()
        self.storage.close()


class StartupError(Exception):
    """The server cannot start; the message is one line meant for the user as it is."""


def bind(host: str, port: int, backlog: int = 4096) -> socket.socket:
    """A listening socket on ``host:port``, or :class:`StartupError` saying why not.

    Why bind before anything else: a busy port is then found before any store is
    opened or any pump started, and "serving on" is printed only for a port that is
    really ours (uvicorn would bind after the lifespan started everything)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # not past a listener
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(f"port {port} on {host} is already in use (another millpond?); "
                               "choose --port") from None
        if exc.errno == errno.EACCES:
            raise StartupError(f"cannot listen on {host}:{port}: permission denied; "
                               "choose --port (ports below 1024 need privileges)") from None
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def url_of(sock: socket.socket) -> str:
    """``http://HOST:PORT`` of a bound socket (the real port when ``--port 0``)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(config: ServerConfig) -> None:
    """Run the server until SIGINT/SIGTERM; in-flight requests finish their commits first.

    Raises :class:`StartupError`, before any store is opened, when the data dir is
    locked by another server or the port cannot be bound. The lock is held until the
    process exits, however it exits (see :mod:`millpond.datalock`)."""
    began = time.monotonic()
    host, port = config.host, config.port
    data = Path(config.storage.data_dir)
    try:
        datadir.make_private(data)
        lock = datalock.acquire(data)
    except datalock.DataDirBusy as exc:
        raise StartupError(str(exc)) from None
    except OSError as exc:
        raise StartupError(f"cannot use data dir {data}: {exc.strerror or exc}") from None
    try:
        sock = bind(host, port)
    except StartupError:
        lock.release()
        raise
    # The log's writer thread needs the GIL back as soon as SQLite returns; the default
    # 5 ms switch interval would hold every group commit (and its waiters) hostage to
    # whatever the event loop is parsing.
    sys.setswitchinterval(0.001)
    mp = Millpond(config)
    if mp.token_generated:
        print(f"admin token (stored in {mp.data_dir / 'admin_token'}): {mp.admin_token}",
              flush=True)
    url = url_of(sock)
    _log_opened(mp, url)
    limits = config.http
    served = uvicorn.Config(mp.asgi, loop="uvloop", lifespan="on",
                            http=guarded_protocol(limits.head_timeout, limits.max_connections),
                            timeout_keep_alive=limits.idle_timeout,
                            log_config=None, log_level=None,
                            access_log=config.logging.access_log,
                            timeout_graceful_shutdown=30, backlog=4096)
    try:
        _GracefulServer(served, mp, url=url, began=began).run(sockets=[sock])
    finally:  # not reached after SIGTERM (uvicorn re-raises it): the kernel releases it then
        lock.release()


def _log_opened(mp: Millpond, url: str) -> None:
    sizes = mp.storage.sizes()  # per store, named by the backend (log.db, state.db, ...)
    last_seq = mp.log.last_seq()
    stores = ", ".join(f"{name} {human_bytes(n)}" for name, n in sizes.items())
    log.info("millpond %s starting (pid %d) on %s; data dir %s: %s (last seq %s)",
             _version(), os.getpid(), url, mp.data_dir, stores, f"{last_seq:,}",
             extra={"phase": "starting", "url": url, "data_dir": str(mp.data_dir),
                    "pid": os.getpid(), "version": _version(), "last_seq": last_seq,
                    **{f"{name.replace('.', '_')}_bytes": n for name, n in sizes.items()}})


def _version() -> str:
    try:
        return importlib.metadata.version("millpond")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        return "(unknown version)"


class _GracefulServer(uvicorn.Server):
    """uvicorn's server, plus: on SIGTERM/SIGINT, long-polling readers are let go first,
    so shutdown waits only for requests whose commits are in flight; and it says when it
    is ready and when it stops."""

    def __init__(self, config: uvicorn.Config, mp: Millpond, *, url: str, began: float):
        super().__init__(config)
        self.millpond = mp
        self.url = url
        self.began = began
        self._signal: int | None = None

    def handle_exit(self, sig, frame) -> None:
        if self._signal is None:
            self._signal = sig  # logged by shutdown(): a signal handler should not log
        self.millpond.log.release_waiters()
        super().handle_exit(sig, frame)

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)  # exits the process if the lifespan failed
        if not self.started:
            return
        print(f"millpond serving on {self.url} (data: {self.millpond.data_dir})", flush=True)
        mp = self.millpond
        running, replays = mp.pumps.running(), mp.replays.running()
        log.info("ready in %.2f s: serving on %s; %d destination(s) delivering, "
                 "%d replay(s) running", time.monotonic() - self.began, self.url,
                 len(running), len(replays),
                 extra={"phase": "ready", "url": self.url, "destinations": running,
                        "replays": replays})

    async def shutdown(self, sockets=None) -> None:
        why = signal.Signals(self._signal).name if self._signal else "request"
        log.info("shutting down (%s): finishing in-flight requests, then stopping pumps",
                 why, extra={"phase": "stopping", "signal": why})
        await super().shutdown(sockets)
        mp = self.millpond
        log.info("stopped after %s; last seq %s", human_duration(time.monotonic() - self.began),
                 f"{mp.log.last_seq():,}",
                 extra={"phase": "stopped", "uptime_seconds":
                        round(time.monotonic() - self.began, 3), "last_seq": mp.log.last_seq()})
