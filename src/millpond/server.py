"""Running a millpond server: one process, embedded stores, collector, admin API, pumps.

:func:`serve` takes the data dir's lock and the port first (so a second server or a
busy port fails before anything is opened), then builds the services
(:func:`millpond.app.services.build_services`), the ASGI app whose lifespan it owns
(:func:`millpond.app.asgi.build_asgi`), and runs them under uvicorn until a signal.
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
from millpond.app.asgi import ServerApp, build_asgi
from millpond.app.config import ServerConfig
from millpond.app.http import guarded_protocol
from millpond.app.lifecycle import Lifecycle
from millpond.app.services import Services, build_services
from millpond.errors import MillpondError
from millpond.humanize import human_bytes
from millpond.timeutil import human_duration

log = logging.getLogger("millpond.server")


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
    try:
        mp = build_services(config)
    except MillpondError as exc:  # NATS or PostgreSQL unreachable, a stream set up wrong
        sock.close()
        lock.release()
        raise StartupError(f"cannot open the store: {exc}") from None
    if mp.token_generated:
        print(f"admin token (stored in {mp.data_dir / 'admin_token'}): {mp.admin_token}",
              flush=True)
    url = url_of(sock)
    _log_opened(mp, url)
    limits = config.http
    app = build_asgi(mp, Lifecycle(mp, url))
    served = uvicorn.Config(app, loop="uvloop", lifespan="on", interface="asgi3",
                            http=guarded_protocol(limits.head_timeout, limits.max_connections),
                            timeout_keep_alive=limits.idle_timeout,  # pyright: ignore[reportArgumentType] - annotated int, a float works (a timer)
                            log_config=None, log_level=None,
                            access_log=config.logging.access_log,
                            timeout_graceful_shutdown=30, backlog=4096)
    try:
        _GracefulServer(served, mp, app, url=url, began=began).run(sockets=[sock])
    finally:  # not reached after SIGTERM (uvicorn re-raises it): the kernel releases it then
        lock.release()


def _log_opened(mp: Services, url: str) -> None:
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

    def __init__(self, config: uvicorn.Config, mp: Services, app: ServerApp, *, url: str,
                 began: float):
        super().__init__(config)
        self.millpond = mp
        self.app = app
        self.url = url
        self.began = began
        self._signal: int | None = None

    def handle_exit(self, sig, frame) -> None:
        if self._signal is None:
            self._signal = sig  # logged by shutdown(): a signal handler should not log
        self.millpond.log.release_waiters()
        self.app.release_streams()
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
