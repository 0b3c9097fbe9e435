"""The HTTP server's protection against connections that hold resources without using them.

uvicorn times out a connection only *after* a response (its keep-alive timer), so a
connection that sends nothing, or its request head one byte a second (slowloris), is
held forever: a thousand of them are a thousand file descriptors, and the server stops
accepting SDK traffic. This protocol adds what production HTTP servers do:

- a **head timeout**: from the moment a connection opens, or a new request on it starts,
  the request head (line and headers) must be complete within ``head_timeout`` seconds,
  else the connection is closed. A request whose head arrived is not limited (a large
  upload may take its time; the collector bounds body sizes);
- a **connection cap**: beyond ``max_connections`` open connections a new one is closed
  at once (SDKs retry a dropped connection), instead of the process running out of file
  descriptors and failing everything, including the connections it already has.

Idle keep-alive connections between requests are closed by uvicorn's own timer
(``idle_timeout``). Each closing is counted in ``/metrics`` and logged once a minute at
most, so an attack is visible without flooding the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from millpond import metrics

log = logging.getLogger("millpond.http")

#: Least seconds between two log lines about closed connections.
LOG_EVERY = 60.0


def guarded_protocol(head_timeout: float, max_connections: int) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with the limits above (pass as ``Config(http=...)``)."""
    return type("GuardedHttpProtocol", (_Guarded,),
                {"head_timeout": head_timeout, "max_connections": max_connections})


class _Guarded(HttpToolsProtocol):
    head_timeout: float = 10.0
    max_connections: int = 4096
    _last_log: float = 0.0
    _unlogged: dict[str, int] = {}
    #: Whether this server's sweep of slow request heads is scheduled (one per server:
    #: :func:`guarded_protocol` makes a class per server).
    _sweeping: bool = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: When the request head now awaited began (None: not waiting for one).
        self._head_since: float | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self._close("connection_limit")
            return
        self._head_since = self.loop.time()
        if not type(self)._sweeping:
            self._schedule_sweep()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_since is None:
            self._head_since = self.loop.time()

    def on_headers_complete(self) -> None:
        self._head_since = None
        super().on_headers_complete()

    # Why one sweep and not a timer per request: arming and cancelling a timer around
    # every request head cost the collector ~3 us of its ~22 us per small request; a
    # sweep a few times per timeout costs nothing per request and closes a slow head
    # at most a quarter of the timeout late.
    def _schedule_sweep(self) -> None:
        type(self)._sweeping = True
        self.loop.call_later(self.head_timeout / 4, self._sweep)

    def _sweep(self) -> None:
        cls = type(self)
        cls._sweeping = False
        deadline = self.loop.time() - self.head_timeout
        waiting = False
        for conn in list(self.connections):
            since = getattr(conn, "_head_since", None)
            if since is None or not isinstance(conn, _Guarded):
                continue
            if since <= deadline:
                conn._head_since = None
                conn._close("head_timeout")
            else:
                waiting = True
        if waiting or self.connections:
            self._schedule_sweep()

    def _close(self, reason: str) -> None:
        if not self.transport.is_closing():
            self.transport.close()
        metrics.CONNECTIONS_CLOSED.labels(reason).inc()
        cls = type(self)
        cls._unlogged = {**cls._unlogged, reason: cls._unlogged.get(reason, 0) + 1}
        now = time.monotonic()
        if now - cls._last_log >= LOG_EVERY:
            cls._last_log = now
            what = ", ".join(f"{n} for {r.replace('_', ' ')}" for r, n in cls._unlogged.items())
            cls._unlogged = {}
            log.warning("closed connections that held the server without a request: %s "
                        "(open now: %d; limits: request head within %gs, %d connections)",
                        what, len(self.connections), self.head_timeout, self.max_connections,
                        extra={"reason": reason, "open_connections": len(self.connections)})
