"""The collector's ASGI entry: routes ``/v1/*`` and the Track API, everything else onward."""

from __future__ import annotations

from millpond import metrics
from millpond.collector.request import error_body, send_error, send_json
from millpond.collector.segment_api import SegmentAPI
from millpond.collector.track_api import TrackAPI
from millpond.collector.validation import TYPES
from millpond.errors import MillpondError, NotFound
from millpond.log.base import EventLog
from millpond.sources.store import SourceStore

SEGMENT_ENDPOINTS = frozenset((*TYPES, "batch", "import"))


class CollectorApp:
    """ASGI app: the collector's own paths, and ``fallback`` (the admin API) for the rest."""

    def __init__(self, log: EventLog, sources: SourceStore, fallback):
        self.segment = SegmentAPI(log, sources)
        self.track = TrackAPI(log, sources)
        self.fallback = fallback

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.fallback(scope, receive, send)
            return
        path: str = scope["path"]
        try:
            if path.startswith("/v1/"):
                endpoint = path[4:].rstrip("/")
                if endpoint not in SEGMENT_ENDPOINTS:
                    raise NotFound(f"no collector endpoint {path}; use /v1/batch or "
                                   f"/v1/{{{','.join(TYPES)}}}")
                if scope["method"] != "POST":
                    await send_json(send, 405, error_body("method_not_allowed", "use POST"),
                                    [(b"allow", b"POST")])
                    return
                await self.segment.handle(scope, receive, send, endpoint)
            elif path.startswith("/api/v1/"):
                # Split the raw, still percent-encoded path: TrackAPI unquotes each segment
                # once, so an id holding '%' or '/' arrives intact.
                raw = scope.get("raw_path") or b""
                rest = raw[8:].decode(errors="replace") if raw.startswith(b"/api/v1/") \
                    else path[8:]
                parts = [p for p in rest.split("/") if p]
                await self.track.handle(scope, receive, send, scope["method"], parts)
            elif path == "/ping":
                await send_json(send, 200, {"ok": True})
            else:
                await self.fallback(scope, receive, send)
        except MillpondError as exc:
            metrics.REQUESTS_REFUSED.labels(exc.code).inc()
            await send_error(send, exc)
