"""Builds the admin API application over a server's services and wires every router.

It starts nothing: the server owns the lifespan (:mod:`millpond.app.asgi`)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from millpond import metrics
from millpond.api import (
    cluster,
    dead_letters,
    destinations,
    docs,
    errors,
    events,
    imports,
    people,
    regulations,
    replays,
    schema,
    segments,
    sources,
    storage,
)
from millpond.api.deps import require_admin
from millpond.connections import metrics as delivery_metrics

if TYPE_CHECKING:
    from millpond.app.services import Services

ROUTERS = (sources.router, events.router, people.router, destinations.router,
           dead_letters.router, imports.router, replays.router, segments.router,
           regulations.router, storage.router, cluster.router)


def build_api(services: Services) -> FastAPI:
    app = FastAPI(title="millpond admin API", version="0.1.0",
                  openapi_url="/api/openapi.json", docs_url=None, redoc_url=None)
    app.state.services = services
    errors.install(app)
    schema.install(app)
    docs.install(app)
    for router in ROUTERS:
        app.include_router(router)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus(request: Request) -> Response:
        if services.config.metrics_auth:  # --metrics-auth: scrapers send the admin token
            require_admin(request)
        metrics.LOG_LAST_SEQ.set(services.log.last_seq())
        await delivery_metrics.refresh()
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", include_in_schema=False)
    def health() -> dict[str, Any]:
        """Up, and whether the storage takes writes (``storage``: the open unavailable
        episode, e.g. a full disk, or null). ``pid``: which process answers, so whoever
        started a server can tell it from another one that holds the same port."""
        episode = services.storage.health.snapshot()
        return {"ok": episode is None, "last_seq": services.log.last_seq(), "storage": episode,
                "pid": os.getpid()}

    return app
