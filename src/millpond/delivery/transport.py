"""Putting built requests on the wire: the one place that does outbound HTTP.

Why a tiny protocol instead of using an HTTP client everywhere: the pump only needs
"send this request, give me status, headers and body", and keeping it that narrow lets
the bench measure the pump without a network (:class:`CountingTransport`) and lets tests
inject failures, while production shares one pooled client across destinations.

Why aiohttp for that client (and httpx only in the CLI and the backfill sink): with
several requests in flight per destination (a webhook of batch 1 sends one request per
event) the client's CPU per request is the delivery rate's limit. httpx/httpcore parse
HTTP/1.1 in pure Python and scan their pool on every request: about 0.6-1 ms of CPU per
request, so under 1,000 requests/s per core. aiohttp parses with llhttp in C and keeps
idle connections per host in a stack: several times less per request
(``bench/deliver.py --http`` measures both the engine alone and this path).

Failures are raised as httpx's exception types (``ConnectError``, ``ReadTimeout``,
``UnsupportedProtocol``...): that is the vocabulary
:meth:`~millpond.destinations.base.DestinationType.transport_error` classifies by name
and the reason users read in stats ("ConnectError: ..."), whichever client sent.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
import certifi
import httpx
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from millpond.destinations.base import OutboundRequest

if TYPE_CHECKING:
    from aiohttp.connector import Connection

#: Seconds; the server passes its ``delivery.timeout`` setting (tests of slow
#: destinations set it low so they need not wait real-world timeouts).
DEFAULT_TIMEOUT = 30.0
#: Connections held at most over all destinations (each holds at most its
#: ``max_in_flight``: its deliverer's slots bound its requests on the wire).
MAX_CONNECTIONS = 1024
#: Seconds an idle keep-alive connection is kept for the next request.
KEEPALIVE_SECONDS = 15.0
#: URLs whose proxy is remembered (destinations send to a few fixed endpoints each).
PROXY_CACHE = 1024

#: What the sending task wants called when its request's headers are on the wire (the
#: rate limiter counts the request from then: see ``SlidingWindow.restamp``). A context
#: variable, so that the narrow ``send(request)`` protocol stays as it is and transports
#: without a wire to watch (the bench's, the tests') need do nothing.
ON_WIRE: ContextVar[Callable[[], None] | None] = ContextVar("millpond_on_wire", default=None)


class _WireRequest(aiohttp.ClientRequest):
    """Calls :data:`ON_WIRE` once aiohttp has written the request on a connection.

    Why after the body is written, not when ``send`` starts: aiohttp buffers the headers
    and writes them with the body from a task of its own, one or more event-loop turns
    later. On a busy machine those turns took tens of milliseconds, so a request counted
    from ``send`` reached the vendor later than counted and a 1-second window by arrival
    held 6% more than the limit (a CI failure). Counted from after the write, a request
    leaves the limiter's window no earlier than the vendor's. ``send`` still counts it
    (a request without a body never calls ``write_bytes``); :meth:`SlidingWindow.restamp`
    keeps the later time.

    Why not an ``aiohttp.TraceConfig`` (``on_request_headers_sent``): a session with a
    trace config builds trace objects and awaits a dozen signals for every request, a
    tenth of the client's CPU per request at thousands of requests a second
    (``bench/deliver.py``'s in-flight run), to deliver one callback."""

    async def send(self, conn: Connection) -> aiohttp.ClientResponse:
        _on_wire()
        return await super().send(conn)

    async def write_bytes(self, *args: Any, **kwargs: Any) -> None:
        try:
            await super().write_bytes(*args, **kwargs)
        finally:
            _on_wire()


def _on_wire() -> None:
    on_wire = ON_WIRE.get()
    if on_wire is not None:
        on_wire()


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


class HttpTransport:
    """One pooled aiohttp session shared by every destination (see the module docstring).

    The session is made on the first request, in the loop that sends (a session belongs
    to one event loop). Timeouts as httpx's ``Timeout(timeout, connect=min(timeout, 10))``
    had them: ``timeout`` seconds to get a connection from the pool and between reads,
    at most 10 to connect. TLS verifies against certifi's roots and proxies come from
    the environment (read once per URL: :meth:`_proxy`), as with httpx. No redirects are
    followed (a vendor that redirects is answering, not accepting)."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT,
                 max_connections: int = MAX_CONNECTIONS):
        self.timeout = timeout
        self._max = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: ``(proxy, proxy auth)`` from the environment per URL, or None for no proxy
        #: (see :meth:`_proxy`); made again with the session.
        self._proxies: dict[str, tuple[URL, aiohttp.BasicAuth | None] | None] = {}

    def _open(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._session
        if session is None or session.closed or self._loop is not loop:
            connector = aiohttp.TCPConnector(
                limit=self._max, keepalive_timeout=KEEPALIVE_SECONDS,
                ssl=ssl.create_default_context(cafile=certifi.where()))
            session = self._session = aiohttp.ClientSession(
                connector=connector, request_class=_WireRequest,
                timeout=aiohttp.ClientTimeout(total=None, connect=self.timeout,
                                              sock_connect=min(self.timeout, 10.0),
                                              sock_read=self.timeout),
                headers={"User-Agent": "millpond"},
                # a request's body goes as built: no guessed Content-Type added to it
                skip_auto_headers=("Content-Type",),
                # proxies come from the environment, but once per host (_proxy)
                trust_env=False, auto_decompress=True)
            self._loop = loop
            self._proxies = {}
        return session

    def _proxy(self, url: str) -> tuple[URL, aiohttp.BasicAuth | None] | None:
        """The proxy for ``url`` from ``HTTP(S)_PROXY`` / ``NO_PROXY``, as httpx honoured
        them: read when the client is made, not per request.

        Why not aiohttp's ``trust_env=True``: it reads the environment and parses
        ``~/.netrc`` in a worker thread twice for *every* request (proxy, then
        credentials for the vendor's host): two thread hops per request, which at a
        webhook's one request per event cost more than the whole HTTP exchange. And
        ``.netrc`` credentials for a vendor's host are not ours to add (httpx did not,
        and aiohttp refuses them next to the vendor's own ``Authorization`` header)."""
        proxies = self._proxies
        try:
            return proxies[url]
        except KeyError:
            pass
        try:
            found: tuple[URL, aiohttp.BasicAuth | None] | None = \
                get_env_proxy_for_url(URL(url))
        except (LookupError, ValueError):  # no proxy; a bad URL is aiohttp's to refuse
            found = None
        if len(proxies) >= PROXY_CACHE:
            proxies.clear()
        proxies[url] = found
        return found

    async def send(self, request: OutboundRequest) -> Response:
        session = self._open()
        try:
            proxy = self._proxy(request.url)
            async with session.request(request.method, request.url,
                                       headers=request.headers, data=request.body,
                                       allow_redirects=False,
                                       proxy=proxy[0] if proxy else None,
                                       proxy_auth=proxy[1] if proxy else None) as response:
                body = await response.read()
                return Response(response.status, response.headers, body)
        except aiohttp.ClientError as exc:
            raise _as_httpx(exc) from exc
        except TimeoutError as exc:
            raise httpx.ReadTimeout(str(exc) or "timed out") from exc
        except ValueError as exc:  # a header aiohttp refuses to put on the wire
            raise httpx.LocalProtocolError(str(exc)) from exc

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()


def _as_httpx(exc: aiohttp.ClientError) -> Exception:
    """The httpx exception that names the same failure (see the module docstring)."""
    text = str(exc) or type(exc).__name__
    match exc:
        case aiohttp.NonHttpUrlClientError():
            return httpx.UnsupportedProtocol(text)
        case aiohttp.InvalidUrlClientError():
            return httpx.InvalidURL(text)
        case aiohttp.ConnectionTimeoutError():
            return httpx.ConnectTimeout(text)
        case aiohttp.ServerTimeoutError():
            return httpx.ReadTimeout(text)
        case aiohttp.ClientConnectorError():
            return httpx.ConnectError(text)
        case aiohttp.ServerDisconnectedError() | aiohttp.ClientPayloadError():
            return httpx.RemoteProtocolError(text)
        case aiohttp.ClientOSError():
            return httpx.ReadError(text)
        case _:
            return httpx.TransportError(text)


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
