"""The web console: server-rendered pages at ``/console/``, made live with htmx and server-
sent events, for the people who run millpond.

Layout: :mod:`.services` is the one door into the server's services (the same objects
the admin API uses); :mod:`.auth` signs people in and guards every answer (session,
CSRF, Content-Security-Policy); :mod:`.render` renders the Jinja2 templates in
``templates/``; :mod:`.sse` streams the live parts; one module per page
(:mod:`.overview`, :mod:`.sources`, :mod:`.debugger`, :mod:`.destinations` with
:mod:`.outcomes` (the events behind each funnel count), :mod:`.replays`,
:mod:`.imports`, :mod:`.people`, :mod:`.segments`, :mod:`.regulations`). ``static/``
holds the CSS, the small scripts and the vendored htmx (no build step, no CDN).

The console sits behind the collector's routing (``millpond.collector.app`` answers its
own paths first), so it adds nothing to the collector's path.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from millpond.console.auth import CsrfError, Guard, Sessions
from millpond.console.render import BASE, Renderer
from millpond.console.services import ConsoleServices
from millpond.console.sse import Streams
from millpond.errors import MillpondError

if TYPE_CHECKING:
    from millpond.app.services import Services

STATIC = Path(__file__).parent / "static"


class Console:
    """What every page handler needs: the services, the renderer, sessions, streams."""

    def __init__(self, mp: Services):
        self.services = ConsoleServices(mp)
        self.render = Renderer(mp.storage.health.snapshot)
        self.sessions = Sessions(mp.admin_token)
        self.streams = Streams()
        self.asgi = Guard(self._build(), self.sessions)

    def _build(self) -> Starlette:
        from millpond.console import (
            debugger,
            destinations,
            imports,
            outcomes,
            overview,
            people,
            regulations,
            replays,
            retrying,
            segments,
            sessions_pages,
            sources,
        )

        routes = [Mount("/static", StaticFiles(directory=STATIC), name="static")]
        for module in (sessions_pages, overview, sources, debugger, destinations, outcomes,
                       retrying, replays, imports, people, segments, regulations):
            routes += module.routes(self)
        app = Starlette(routes=routes)
        app.add_exception_handler(MillpondError, self._refused)
        app.add_exception_handler(CsrfError, self._csrf)
        return app

    async def _refused(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, MillpondError)
        return self.render.page(request, "error.html", status=exc.status,
                                title="Refused", message=exc.message)

    async def _csrf(self, request: Request, exc: Exception) -> Response:
        return self.render.page(request, "error.html", status=403, title="Refused",
                                message="This form is stale or came from elsewhere (its "
                                        "security token did not match). Reload the page "
                                        "and try again.")

    def stop(self) -> None:
        """The server is stopping: end the live streams so shutdown is not held up."""
        self.streams.stop()


def mount(api, mp: Services) -> Console:
    """Serve the console at ``/console/`` of ``api`` (the admin API's app), and send
    ``/`` there."""
    console = Console(mp)
    api.mount(BASE, console.asgi)

    @api.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(f"{BASE}/", 307)

    return console
