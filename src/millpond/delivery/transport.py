"""Putting built requests on the wire: the one place that does outbound HTTP.

Why a tiny protocol instead of using httpx everywhere: the pump only needs "send this
request, give me status, headers and body", and keeping it that narrow lets the bench
measure the pump without a network (:class:`CountingTransport`) and lets tests inject
failures, while production shares one pooled ``httpx.AsyncClient`` across destinations.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import httpx

from millpond.destinations.base import OutboundRequest

#: Seconds; the server passes its ``delivery.timeout`` setting (tests of slow
#: destinations set it low so they need not wait real-world timeouts).
DEFAULT_TIMEOUT = 30.0
#: Connections held at most, and kept open when idle, over all shards.
MAX_CONNECTIONS = 1024
KEEPALIVE = 256
#: Pools the connections are split over (see :class:`HttpxTransport`).
SHARDS = 8


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
    """Pooled clients shared by every destination; a slow vendor holds only its own
    connections (at most its ``max_in_flight``).

    Why several clients (``shards``), used in turn: httpcore's pool looks at every one of
    its connections for every request it places (and polls each idle one), so its cost
    per request grows with the connections it holds. With 128 requests in flight to one
    50 ms receiver, one pool placed about 100 requests/s on a busy machine; eight pools
    of a sixteenth of the connections each placed 700-800.
    """

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, shards: int = SHARDS):
        self.timeout = timeout
        shards = max(1, shards)
        self._clients = [httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=MAX_CONNECTIONS // shards,
                                max_keepalive_connections=KEEPALIVE // shards),
            follow_redirects=False, headers={"User-Agent": "millpond"})
            for _ in range(shards)]
        self._turn = itertools.cycle(self._clients)

    async def send(self, request: OutboundRequest) -> Response:
        response = await next(self._turn).request(request.method, request.url,
                                                  headers=request.headers,
                                                  content=request.body)
        return Response(response.status_code, response.headers, response.content)

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()


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
