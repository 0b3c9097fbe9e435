"""Putting built requests on the wire: the one place that does outbound HTTP.

Why a tiny protocol instead of using httpx everywhere: the pump only needs "send this
request, give me status, headers and body", and keeping it that narrow lets the bench
measure the pump without a network (:class:`CountingTransport`) and lets tests inject
failures, while production shares one pooled ``httpx.AsyncClient`` across destinations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import httpx

from millpond.destinations.base import OutboundRequest

#: Seconds; the server passes its ``delivery.timeout`` setting (tests of slow
#: destinations set it low so they need not wait real-world timeouts).
DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport(Protocol):
    async def send(self, request: OutboundRequest) -> Response:
        """Send ``request``; raise on transport failure (no answer), never on a status."""
        ...

    async def aclose(self) -> None: ...


class HttpxTransport:
    """One pooled client for every destination; a slow vendor holds only its own
    connection (each destination has at most one request in flight)."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT):
        self.timeout = timeout
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200),
            follow_redirects=False, headers={"User-Agent": "millpond"})

    async def send(self, request: OutboundRequest) -> Response:
        response = await self._client.request(request.method, request.url,
                                              headers=request.headers, content=request.body)
        return Response(response.status_code, response.headers, response.content)

    async def aclose(self) -> None:
        await self._client.aclose()


class CountingTransport:
    """An in-process sink that answers 200 and counts: measures the pump, not a network."""

    def __init__(self) -> None:
        self.requests = 0
        self.items = 0
        self.bytes = 0

    async def send(self, request: OutboundRequest) -> Response:
        self.requests += 1
        self.items += request.item_count
        self.bytes += len(request.body)
        return Response(200, {}, b'{"status":1}')

    async def aclose(self) -> None:
        return None
