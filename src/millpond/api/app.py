"""Builds the admin API application and wires every router."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from millpond import metrics
from millpond.api import errors, events, sources
from millpond.connections import metrics as delivery_metrics

if TYPE_CHECKING:
    from millpond.server import Millpond


def build_api(mp: Millpond) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        await mp.start()
        try:
            yield
        finally:
            await mp.stop()

    app = FastAPI(title="millpond admin API", version="0.1.0", lifespan=lifespan,
                  openapi_url="/api/openapi.json", docs_url="/api/docs", redoc_url=None)
    app.state.millpond = mp
    errors.install(app)
    for router in (sources.router, events.router, *mp.extra_routers()):
        app.include_router(router)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        metrics.LOG_LAST_SEQ.set(mp.log.last_seq())
        await delivery_metrics.refresh()
        mp.refresh_metrics()
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", include_in_schema=False)
    def health() -> dict:
        return {"ok": True, "last_seq": mp.log.last_seq()}

    return app
