"""The collector's ASGI entry: routes its paths, and everything else onward to the admin API.

Collector paths:

- ``POST /v1/<type>``, ``/v1/batch``, ``/v1/import`` (Segment's HTTP API, server SDKs);
  the one-letter forms browser SDKs use (``/v1/i|t|p|s|g|a``, ``/v1/b``);
  ``POST /beacon/v1/batch?writeKey=`` (RudderStack's beacon mode);
- the configuration browser SDKs load first (:mod:`millpond.collector.browser`);
- the classic Track API under ``/api/v1/`` (:mod:`millpond.collector.track_api`).

The browser-facing ones answer CORS preflights and carry CORS headers on every answer
(:mod:`millpond.collector.cors`). Whatever fails unexpectedly, here or in the admin API,
is answered with the JSON error shape the SDKs parse, logged once with its traceback and
counted in ``/metrics``; never a plain-text 500.
"""

from __future__ import annotations

import logging

from millpond import metrics
from millpond.collector.browser import CUSTOMERIO, SEGMENT, BrowserEndpoints, query_write_key
from millpond.collector.cors import preflight_headers, with_cors
from millpond.collector.public_url import PublicAddress
from millpond.collector.request import error_body, header, send_error, send_json
from millpond.collector.segment_api import SegmentAPI
from millpond.collector.track_api import TrackAPI
from millpond.collector.validation import TYPES
from millpond.errors import MillpondError, NotFound
from millpond.regulations.blocklist import Blocklist
from millpond.sources.service import SourceService
from millpond.storage.contracts import EventLog, RejectionStore

log = logging.getLogger("millpond.collector")

#: ``/v1/<endpoint>`` → the Segment API endpoint it is (browser SDKs use the short forms).
SEGMENT_ENDPOINTS = {**{t: t for t in (*TYPES, "batch", "import")},
                     "i": "identify", "t": "track", "p": "page", "s": "screen", "g": "group",
                     "a": "alias", "b": "batch"}
#: Path prefixes a page's SDK calls: these get CORS.
BROWSER_PREFIXES = ("/v1/", "/customerio/", "/sourceConfig", "/beacon/")


class CollectorApp:
    """ASGI app: the collector's own paths, and ``fallback`` (the admin API) for the rest."""

    def __init__(self, log: EventLog, rejections: RejectionStore, sources: SourceService,
                 fallback, public: PublicAddress | None = None,
                 blocklist: Blocklist | None = None):
        self.segment = SegmentAPI(log, rejections, sources, blocklist)
        self.track = TrackAPI(log, sources, blocklist)
        self.browser = BrowserEndpoints(sources, public or PublicAddress())
        self.fallback = fallback

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.fallback(scope, receive, send)
            return
        started = False

        async def tracking_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        path: str = scope["path"]
        browser = path.startswith(BROWSER_PREFIXES)
        origin = header(scope, b"origin") if browser else None
        out = with_cors(tracking_send, origin) if origin is not None else tracking_send
        component = "collector" if browser or path.startswith("/api/v1/") else "api"
        try:
            if browser:
                await self._browser(scope, receive, out, path)
            elif path.startswith("/api/v1/"):
                await self._track(scope, receive, out, path)
            elif path == "/ping":
                await send_json(out, 200, {"ok": True})
            else:
                await self.fallback(scope, receive, out)
        except MillpondError as exc:
            metrics.REQUESTS_REFUSED.labels(exc.code).inc()
            if not started:
                await send_error(out, exc)
        except Exception:
            # The admin API has already answered (its handler makes the same JSON 500)
            # and re-raised; either way, this is the one place that logs and counts it.
            metrics.INTERNAL_ERRORS.labels(component).inc()
            log.exception("unexpected error on %s %s", scope.get("method"), path)
            if not started:
                await send_json(out, 500, error_body(
                    "internal", "internal error; the server log has the details"))

    async def _browser(self, scope, receive, send, path: str) -> None:
        method = scope["method"]
        route = _browser_route(path)
        if route is None:
            raise NotFound(f"no collector endpoint {path}; use /v1/batch or "
                           f"/v1/{{{','.join(TYPES)}}}")
        kind, arg, allowed = route
        if method == "OPTIONS":
            headers = preflight_headers(scope)  # ``send`` adds the origin's headers
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        if method != allowed:
            await send_json(send, 405, error_body("method_not_allowed", f"use {allowed}"),
                            [(b"allow", f"{allowed}, OPTIONS".encode())])
            return
        if kind == "events":
            await self.segment.handle(scope, receive, send, arg)
        elif kind == "beacon":
            await self.segment.handle(scope, receive, send, "batch",
                                      query_key=query_write_key(scope))
        elif kind == "settings":
            await self.browser.settings(scope, send, arg, SEGMENT)
        elif kind == "customerio":
            await self.browser.settings(scope, send, arg, CUSTOMERIO)
        elif kind == "source_config":
            await self.browser.source_config(scope, send)
        else:
            await self.browser.usage_metrics(scope, receive, send)

    async def _track(self, scope, receive, send, path: str) -> None:
        # Split the raw, still percent-encoded path: TrackAPI unquotes each segment once,
        # so an id holding '%' or '/' arrives intact.
        raw = scope.get("raw_path") or b""
        rest = raw[8:].decode(errors="replace") if raw.startswith(b"/api/v1/") else path[8:]
        parts = [p for p in rest.split("/") if p]
        await self.track.handle(scope, receive, send, scope["method"], parts)


def _browser_route(path: str) -> tuple[str, str, str] | None:
    """(handler kind, its argument, the method it takes) for a browser-facing path."""
    if path.startswith("/v1/"):
        rest = path[4:].rstrip("/")
        endpoint = SEGMENT_ENDPOINTS.get(rest)
        if endpoint is not None:
            return ("events", endpoint, "POST")
        if rest == "m":
            return ("usage_metrics", "", "POST")
        key = _settings_key(rest)
        return ("settings", key, "GET") if key else None
    if path.startswith("/customerio/v1/"):
        key = _settings_key(path[len("/customerio/v1/"):].rstrip("/"))
        return ("customerio", key, "GET") if key else None
    if path in ("/sourceConfig", "/sourceConfig/"):
        return ("source_config", "", "GET")
    if path.rstrip("/") == "/beacon/v1/batch":
        return ("beacon", "", "POST")
    return None


def _settings_key(rest: str) -> str | None:
    """The write key of ``projects/{writeKey}/settings``, else None."""
    parts = rest.split("/")
    if len(parts) == 3 and parts[0] == "projects" and parts[2] == "settings" and parts[1]:
        return parts[1]
    return None
