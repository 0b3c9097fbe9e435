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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self._close("connection_limit")
            return
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        self._close("head_timeout")

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
