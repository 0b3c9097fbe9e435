"""HttpTransport against a real HTTP server on loopback: the request goes as built, the
answer comes back whole, and every failure without an answer is raised as the httpx
exception a destination type classifies (retry, or reject for a URL it cannot use)."""

from __future__ import annotations

import asyncio
import gzip
import socket
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest

from millpond.delivery.transport import HttpTransport
from millpond.destinations.base import OutboundRequest, Reject, Retry
from millpond.destinations.webhook import Webhook
from tests.support.receiver import Receiver

Handler = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]


async def serve(handler: Handler) -> tuple[asyncio.AbstractServer, int, list[bytes]]:
    """A raw HTTP/1.1 keep-alive server: hands each request (head + body) to ``handler``."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                request = head + await reader.readexactly(length)
                seen.append(request)
                await handler(request, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], seen


def post(port: int, body: bytes = b'{"a":1}', headers: dict[str, str] | None = None,
         scheme: str = "http") -> OutboundRequest:
    return OutboundRequest("POST", f"{scheme}://127.0.0.1:{port}/hook?x=1",
                           headers if headers is not None else
                           {"Content-Type": "application/json", "X-Key": "k1"}, body, 1)


def test_sends_the_request_as_built_and_reads_the_whole_answer():
    answer = gzip.compress(b'{"status":1}')

    async def ok(_request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 429 Too Many\r\nretry-after: 7\r\nContent-Encoding: gzip\r\n"
                     b"Content-Length: " + str(len(answer)).encode() + b"\r\n\r\n" + answer)

    async def main():
        server, port, seen = await serve(ok)
        transport = HttpTransport(timeout=5)
        try:
            first = await transport.send(post(port))
            second = await transport.send(post(port, b"raw", headers={}))
        finally:
            await transport.aclose()
            server.close()
        return first, second, seen

    first, second, seen = asyncio.run(main())
    assert (first.status, first.body) == (429, b'{"status":1}')  # decoded, as httpx did
    assert first.headers["Retry-After"] == "7"  # case-insensitive
    head, _, body = seen[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /hook?x=1 HTTP/1.1") and body == b'{"a":1}'
    assert b"\r\nX-Key: k1" in head and b"\r\nUser-Agent: millpond" in head
    # a body sent without a Content-Type gets none guessed for it
    assert b"content-type" not in seen[1].lower().partition(b"\r\n\r\n")[0]
    assert second.status == 429 and len(seen) == 2


def test_a_slow_answer_times_out_as_a_retry():
    async def slow(_request: bytes, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async def main():
        server, port, _ = await serve(slow)
        transport = HttpTransport(timeout=0.3)
        try:
            with pytest.raises(httpx.TimeoutException) as caught:
                await transport.send(post(port))
        finally:
            await transport.aclose()
            server.close()
        return caught.value

    exc = asyncio.run(main())
    outcome = Webhook.from_settings(Webhook.settings_example).transport_error(exc)
    assert isinstance(outcome, Retry) and "Timeout" in outcome.reason


def test_refused_connection_and_dropped_answer_are_retried():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]

    async def drop(_request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.transport.abort()

    async def main():
        server, port, _ = await serve(drop)
        transport = HttpTransport(timeout=5)
        errors = []
        try:
            for target in (closed_port, port):
                with pytest.raises(httpx.TransportError) as caught:
                    await transport.send(post(target))
                errors.append(caught.value)
        finally:
            await transport.aclose()
            server.close()
        return errors

    refused, dropped = asyncio.run(main())
    dest = Webhook.from_settings(Webhook.settings_example)
    assert isinstance(refused, httpx.ConnectError)
    assert isinstance(dropped, httpx.RemoteProtocolError | httpx.ReadError)
    for exc in (refused, dropped):
        assert isinstance(dest.transport_error(exc), Retry)


def test_a_url_the_client_cannot_use_is_rejected():
    async def main():
        transport = HttpTransport(timeout=5)
        try:
            with pytest.raises(httpx.TransportError) as caught:
                await transport.send(post(9, scheme="ftp"))
        finally:
            await transport.aclose()
        return caught.value

    exc = asyncio.run(main())
    assert isinstance(Webhook.from_settings(Webhook.settings_example).transport_error(exc),
                      Reject)


def test_tells_the_sending_task_its_request_is_on_the_wire_no_earlier_than_it_arrived():
    """The rate limiter counts a request from the last ON_WIRE call (``restamp`` keeps the
    later time). That must not be before the receiving kernel got the bytes: a request
    counted earlier leaves the limiter's 1-second window before the vendor's, and aiohttp
    writes a request one or more event-loop turns after ``send`` starts (a window 6% over
    the limit on a busy CI machine). The receiver stamps arrival in the kernel."""
    from millpond.delivery.transport import ON_WIRE

    receiver = Receiver()
    calls: list[float] = []

    async def main():
        transport = HttpTransport(timeout=5)
        try:
            ON_WIRE.set(lambda: calls.append(time.time()))
            await transport.send(OutboundRequest(
                "POST", receiver.url, {"Content-Type": "application/json"},
                b'{"userId": "u1"}', 1))
        finally:
            await transport.aclose()

    try:
        asyncio.run(main())
        [(arrived, _)] = receiver.accepted()
    finally:
        receiver.stop()
    assert calls and max(calls) >= arrived


def test_proxies_come_from_the_environment(monkeypatch):
    """``HTTP_PROXY`` sends requests through the proxy (absolute-form target), and a host
    in ``NO_PROXY`` goes direct, as with httpx's ``trust_env``; read once per URL by the
    transport rather than per request by aiohttp (two worker-thread hops each)."""
    async def ok(_request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)

    async def main():
        proxy, proxy_port, via_proxy = await serve(ok)
        target, port, direct = await serve(ok)
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy_port}")
        monkeypatch.setenv("NO_PROXY", "localhost")
        transport = HttpTransport(timeout=5)
        try:
            proxied = await transport.send(post(port))
            again = await transport.send(post(port))
            bypassed = await transport.send(OutboundRequest(
                "POST", f"http://localhost:{port}/direct", {}, b"{}", 1))
        finally:
            await transport.aclose()
            proxy.close()
            target.close()
        return (proxied.status, again.status, bypassed.status), port, via_proxy, direct

    statuses, port, via_proxy, direct = asyncio.run(main())
    assert statuses == (200, 200, 200)
    assert [r.split(b"\r\n")[0] for r in via_proxy] == [
        f"POST http://127.0.0.1:{port}/hook?x=1 HTTP/1.1".encode()] * 2
    assert [r.split(b"\r\n")[0] for r in direct] == [b"POST /direct HTTP/1.1"]
