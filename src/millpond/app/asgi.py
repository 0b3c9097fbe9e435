"""The one ASGI application a server runs: collector paths, admin API, lifespan.

Requests go to the collector first (:class:`~millpond.collector.app.CollectorApp`),
which passes everything that is not its own to the admin API. The ASGI ``lifespan``
messages are answered here, by the server's :class:`~millpond.app.lifecycle.Lifecycle`,
so nothing that is served decides when the server starts or stops.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI

from millpond import console
from millpond.api.app import build_api
from millpond.app.lifecycle import Lifecycle
from millpond.app.services import Services
from millpond.collector.app import CollectorApp

log = logging.getLogger("millpond.server")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ServerApp:
    """``app`` for requests; ``lifecycle`` for the ``lifespan`` protocol; ``console``
    (the web console, mounted in the admin API) to end its live streams at shutdown."""

    def __init__(self, app: ASGIApp, lifecycle: Lifecycle,
                 console: console.Console | None = None):
        self.app = app
        self.lifecycle = lifecycle
        self.console = console

    def release_streams(self) -> None:
        """The server is stopping: the console's live streams (server-sent events) end
        now, so the graceful shutdown does not wait for browsers to hang up."""
        if self.console is not None:
            self.console.stop()

    # Why a plain method that returns the app's awaitable: an ``async def`` that awaits
    # the app would add a coroutine to every request, and a frame that each of its
    # suspensions passes through (uvicorn is told ``interface="asgi3"``).
    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] != "lifespan":
            return self.app(scope, receive, send)
        return self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.lifecycle.start()
                except Exception as exc:  # uvicorn logs the message and exits non-zero
                    log.exception("could not start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.lifecycle.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


def build_admin(services: Services) -> tuple[FastAPI, console.Console]:
    """The app behind the collector's paths: the admin API with the web console mounted
    at ``/console/`` (``/`` redirects there), and the console."""
    api = build_api(services)
    return api, console.mount(api, services)


def build_asgi(services: Services, lifecycle: Lifecycle | None = None) -> ServerApp:
    """The server's ASGI app over ``services``. Without ``lifecycle`` (tests that drive
    requests only), the lifespan starts and stops a new one."""
    api, web = build_admin(services)
    collector = CollectorApp(services.log, services.storage.rejections, services.sources,
                             api, services.public, services.blocklist)
    return ServerApp(collector, lifecycle or Lifecycle(services), web)
