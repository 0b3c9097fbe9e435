"""Idle and slow connections are closed, and open connections are capped (#13 item 9).

Against a real ``millpond serve`` with short limits set through the environment, as an
operator would: a client that sends nothing, one that sends its request head a byte at a
time, a thousand idle ones; the server closes them and keeps answering real requests.
"""

from __future__ import annotations

import os
import socket
import time

import httpx
import pytest

# serial: the limits are timeouts of a second or so, measured here; `make test` runs these
# alone so a busy neighbour process cannot stretch them.
pytestmark = [pytest.mark.slow, pytest.mark.serial]

LIMITS = {"MILLPOND_HTTP_HEAD_TIMEOUT": "1", "MILLPOND_HTTP_IDLE_TIMEOUT": "1"}


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.settimeout(10)
    return sock


def _closed_within(sock: socket.socket, seconds: float) -> float:
    """Seconds until the server closed ``sock`` (reads EOF or a reset), failing after
    ``seconds``."""
    started = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"the server kept the connection open for {seconds}s") from None
    return time.monotonic() - started


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _closed_metric(srv, reason: str) -> float:
    for line in httpx.get(f"{srv.url}/metrics").text.splitlines():
        if line.startswith(f'millpond_http_connections_closed_total{{reason="{reason}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_a_connection_that_sends_nothing_is_closed(server_factory) -> None:
    srv = server_factory("idle", **LIMITS)
    took = _closed_within(_connect(srv.port), 5)
    assert 0.8 <= took < 3, took
    assert _closed_metric(srv, "head_timeout") >= 1


def test_a_request_head_sent_a_byte_at_a_time_is_closed(server_factory) -> None:
    srv = server_factory("slowloris", **LIMITS)
    sock = _connect(srv.port)
    head = b"POST /v1/track HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100
    started = time.monotonic()
    closed = False
    for byte in head:
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        time.sleep(0.1)
        if time.monotonic() - started > 5:
            break
    if not closed:
        _closed_within(sock, 3)
    assert time.monotonic() - started < 4


def test_a_slow_request_head_after_a_kept_alive_request_is_closed(server_factory) -> None:
    """The second request on a connection starts its head within the idle timeout, then
    dribbles: the idle timer no longer runs (bytes came), so the head timeout must close
    it, within one and a half timeouts of its first byte."""
    srv = server_factory("kept-alive-slowloris", **LIMITS)
    sock = _connect(srv.port)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    try:
        for byte in b"POST /v1/track HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100:
            sock.sendall(bytes([byte]))
            time.sleep(0.1)
            if time.monotonic() - started > 5:
                break
        _closed_within(sock, 3)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert time.monotonic() - started < 4
    assert _closed_metric(srv, "head_timeout") >= 1


def test_requests_still_work_and_kept_alive_connections_idle_out(server_factory) -> None:
    srv = server_factory("normal", **LIMITS)
    with httpx.Client(base_url=srv.url) as client:
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
    sock = _connect(srv.port)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    assert _closed_within(sock, 5) < 3   # kept alive, then closed after 1 s of nothing


def test_a_thousand_idle_connections_are_released(server_factory) -> None:
    srv = server_factory("thousand", **LIMITS)
    before = _open_fds(srv.proc.pid)
    socks = [_connect(srv.port) for _ in range(1000)]
    time.sleep(3)
    assert _open_fds(srv.proc.pid) < before + 50   # the server let them all go
    for sock in socks[:20]:
        assert _closed_within(sock, 1) < 1
    for sock in socks:
        sock.close()
    assert httpx.get(f"{srv.url}/healthz").status_code == 200


def test_connections_beyond_the_cap_are_closed_at_once(server_factory) -> None:
    srv = server_factory("capped", MILLPOND_HTTP_MAX_CONNECTIONS="20",
                         MILLPOND_HTTP_HEAD_TIMEOUT="30")
    held = [_connect(srv.port) for _ in range(20)]
    time.sleep(0.3)
    extra = _connect(srv.port)
    assert _closed_within(extra, 2) < 1.5      # refused without waiting for a timeout
    for sock in held:
        sock.close()
    time.sleep(0.3)
    assert httpx.get(f"{srv.url}/healthz").status_code == 200
    assert _closed_metric(srv, "connection_limit") >= 1


def test_limits_are_checked_at_start(tmp_path) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "millpond.cli.main", "serve", "--data",
                           str(tmp_path / "d")], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "MILLPOND_HTTP_HEAD_TIMEOUT": "-1"})
    assert done.returncode == 2
    assert "http.head_timeout" in done.stderr and "Traceback" not in done.stderr
