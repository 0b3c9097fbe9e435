"""``/api/docs``: Swagger UI for the admin API, served entirely from the package.

FastAPI's own docs page loads Swagger UI's script and styles from a CDN, so on a machine
without internet access (where a self-hosted pipeline often runs) the page is blank.
The assets come from the ``fastapi-offline`` package (MIT), which ships Swagger UI 5.32.6
(Apache-2.0) as plain files; we serve them under ``/api/docs/static/`` and point the page
at them, favicon included, so the page makes no request outside this server. The admin
token is a declared bearer scheme (:data:`millpond.api.deps.bearer`), so the page's
"Authorize" button sends it.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(fastapi_offline.__file__).parent / "static"
PREFIX = "/api/docs/static"


def install(app: FastAPI) -> None:
    app.mount(PREFIX, StaticFiles(directory=ASSETS), name="docs-assets")

    @app.get("/api/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/api/openapi.json",
            title=f"{app.title} - docs",
            swagger_js_url=f"{PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{PREFIX}/favicon.png",
            swagger_ui_parameters={"persistAuthorization": True},
        )
