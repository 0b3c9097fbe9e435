"""The HTTP server's protection against connections that hold resources without using them.

uvicorn times out a connection only *after* a response (its keep-alive timer), so a
connection that sends nothing, or its request head one byte a second (slowloris), is
held forever: a thousand of them are a thousand file descriptors, and the server stops
accepting SDK traffic. This protocol adds what production HTTP servers do:

- a **head timeout**: from the moment a connection opens, or a new request on it starts,
  the request head (line and headers) must be complete within ``head_timeout`` seconds,
  else the connection is closed (a sweep four times per timeout finds them, so up to
  half a timeout late). A request whose head arrived is not limited (a large upload may
  take its time; the collector bounds body sizes);
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
        #: The request cycle this connection was waiting after at the last look, and
        #: since when (None: it was not waiting for a request head then).
        self._waiting: tuple[object, float] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self._close("connection_limit")
            return
        self._waiting = (self.cycle, self.loop.time())
        if not type(self)._sweeping:
            self._schedule_sweep()

    # Why a sweep reads uvicorn's state instead of hooks around each request head: a
    # timer armed and cancelled per request cost ~3 us of the collector's ~22 us per small
    # request, and even two overridden parser callbacks (on_message_begin,
    # on_headers_complete) cost 2-4% of a no-op endpoint's rate. The sweep costs nothing
    # per request. A head that starts on a kept-alive connection is first seen by the next
    # sweep, so it is closed 1 to 1.5 head timeouts after it began; a new connection's
    # clock starts when it opens.
    def _awaits_head(self) -> bool:
        """Whether this connection is between requests with bytes of the next one, or
        none yet on a new connection: uvicorn's keep-alive timer is not armed (data came
        in, or nothing did yet), and no request is being answered."""
        cycle = self.cycle
        return (self.timeout_keep_alive_task is None and not self.pipeline
                and (cycle is None or cycle.response_complete))

    def _schedule_sweep(self) -> None:
        type(self)._sweeping = True
        self.loop.call_later(self.head_timeout / 4, self._sweep)

    def _sweep(self) -> None:
        cls = type(self)
        cls._sweeping = False
        now = self.loop.time()
        for conn in list(self.connections):
            if not isinstance(conn, _Guarded):
                continue
            if not conn._awaits_head():
                conn._waiting = None
                continue
            waiting = conn._waiting
            if waiting is None or waiting[0] is not conn.cycle:
                conn._waiting = (conn.cycle, now)  # a new head began since the last look
            elif now - waiting[1] >= self.head_timeout:
                conn._waiting = None
                conn._close("head_timeout")
        if self.connections:
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
