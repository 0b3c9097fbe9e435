"""What browser SDKs fetch besides events: their settings, RudderStack's source config, and
analytics.js usage counters.

Each browser SDK starts by fetching its configuration and sends nothing until that
succeeds, so these answers decide whether a page works at all. They hold the least
that works (the browser-SDK contract in ``docs/architecture.md``): exactly one
integration key, the SDK's own, because a second one makes analytics.js load
"legacy destination" code from the vendor's CDN; no middleware, plugins or remote
metrics; for RudderStack, no device-mode destinations and no stats collection. So a
page loads its SDK and talks to millpond and to nothing else.

- ``GET /v1/projects/{writeKey}/settings``: Segment's analytics.js (and Segment's mobile
  SDKs), integration ``Segment.io``;
- ``GET /customerio/v1/projects/{writeKey}/settings``: Customer.io's browser SDK, whose
  users set ``cdnURL`` to ``<millpond>/customerio``; it fetches the very same path as
  analytics.js, so the prefix is the only way to tell which key it needs;
- ``GET /sourceConfig/`` (RudderStack v3; write key by Basic auth or ``?writeKey=``);
- ``POST /v1/m``: analytics.js usage counters, acknowledged and counted, never stored.
"""

from __future__ import annotations

from urllib.parse import parse_qs

import msgspec

from millpond import metrics
from millpond.collector.cors import check_origin
from millpond.collector.public_url import PublicAddress
from millpond.collector.request import credentials, read_body, send_json
from millpond.errors import BadRequest, NotFound, Unauthorized
from millpond.sources.store import Source, SourceStore

SEGMENT = "Segment.io"
CUSTOMERIO = "Customer.io Data Pipelines"
#: Usage counters are a few hundred bytes; anything far larger is not analytics.js.
MAX_METRICS_BYTES = 64 * 1024


def query_write_key(scope: dict) -> str | None:
    """``?writeKey=`` of the request, if given (RudderStack's beacon and config calls)."""
    query = parse_qs((scope.get("query_string") or b"").decode("latin-1"))
    values = query.get("writeKey")
    return values[0] if values else None


class BrowserEndpoints:
    """The configuration answers browser SDKs load before they send anything."""

    def __init__(self, sources: SourceStore, public: PublicAddress):
        self.sources = sources
        self.public = public

    def _browser_source(self, write_key: str | None) -> Source:
        """The enabled pipelines source of ``write_key``; 404 otherwise, as a vendor's CDN
        answers for a key it does not know (the SDK then logs it and stops)."""
        source = self.sources.by_write_key(write_key) if write_key else None
        if source is None:
            raise NotFound("no source has this write key")
        if not source.enabled:
            raise NotFound(f"source {source.name} is disabled")
        if source.kind != "pipelines":
            raise NotFound(f"source {source.name} is a {source.kind} source; browser and "
                           "mobile SDKs send to a pipelines source")
        return source

    async def settings(self, scope: dict, send, write_key: str, integration: str) -> None:
        source = self._browser_source(write_key)
        check_origin(scope, source)
        address = self.public.resolve(scope)
        await send_json(send, 200, {
            "integrations": {integration: {"apiKey": source.write_key,
                                           "apiHost": f"{address.host}/v1",
                                           "protocol": address.protocol}},
            "metrics": {"sampleRate": 0},
        })

    async def source_config(self, scope: dict, send) -> None:
        user, _password, _bearer = credentials(scope)
        write_key = user or query_write_key(scope)
        if not write_key:
            raise Unauthorized("missing write key: send it as the Basic auth user name or "
                               "as ?writeKey=")
        source = self._browser_source(write_key)
        check_origin(scope, source)
        await send_json(send, 200, {"source": {
            "id": source.id, "name": source.name, "workspaceId": "millpond",
            "enabled": True, "config": {}, "destinations": []}})

    async def usage_metrics(self, scope: dict, receive, send) -> None:
        body = await read_body(scope, receive, MAX_METRICS_BYTES)
        try:
            data = msgspec.json.decode(body) if body.strip() else {}
        except msgspec.DecodeError:
            raise BadRequest("usage metrics must be JSON: {\"series\": [...]}") from None
        series = data.get("series") if isinstance(data, dict) else None
        metrics.SDK_USAGE_REPORTS.inc()
        if isinstance(series, list):
            metrics.SDK_USAGE_SERIES.inc(len(series))
        await send_json(send, 200, {"success": True})
