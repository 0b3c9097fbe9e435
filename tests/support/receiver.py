"""A webhook receiver for pacing and ordering tests: kernel arrival times, delays, faults.

Why not the vendor fakes' stdlib server: a 1-second window measured on a busy machine
is only as good as its timestamps, and a receiver thread that was descheduled for 50 ms
stamps a queue of requests as if they had arrived together (5% of a 1-second window).
Here each request is stamped with the time the kernel received its first bytes
(``SO_TIMESTAMPNS``), which is when millpond sent it, however late the receiver reads it.

It also checks what per-user order means with several requests in flight: a request
that carries a user whose previous request has not been answered yet is an *overlap*
(one user's requests overtaking each other is only possible through one), and each
user's accepted events must arrive in the order of their ``properties.n``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


@dataclass
class Arrival:
    """One request: when the kernel received it, its payloads, and the answer given."""

    at: float
    payloads: list[dict]
    status: int = 0


@dataclass
class Receiver:
    """``delay()`` seconds before each answer; ``fail(payloads)`` may return a status to
    answer instead of 200 (the request then counts as not accepted)."""

    delay: Callable[[], float] = lambda: 0.0
    fail: Callable[[list[dict]], int | None] = lambda payloads: None
    arrivals: list[Arrival] = field(default_factory=list)
    overlaps: list[str] = field(default_factory=list)
    #: The most requests being answered at once.
    peak: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}  # user -> requests of theirs not yet answered
        self._answering = 0
        self._sock = socket.create_server(("127.0.0.1", 0), backlog=512)
        # On the listening socket, not on each accepted one: the first request on a
        # connection can arrive before a busy accept thread gets to it, and the kernel
        # stamps bytes only while some socket asks for stamps (else it stamps them when
        # read). Accepted sockets inherit the option. Without this, the first requests
        # were stamped late and the start of a test looked like a clump (a CI failure).
        self._sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._conns: set[socket.socket] = set()
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True, name="receiver").start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}/hook"

    def stop(self) -> None:
        self._stopped = True
        with contextlib.suppress(OSError):
            self._sock.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    # what arrived ------------------------------------------------------------------------
    def accepted(self) -> list[tuple[float, list[dict]]]:
        """``(arrival, payloads)`` of every request answered 200, in arrival order."""
        with self._lock:
            return sorted((a.at, a.payloads) for a in self.arrivals if a.status == 200)

    def events(self) -> list[dict]:
        return [p for _, payloads in self.accepted() for p in payloads]

    def order_errors(self) -> list[str]:
        """Overlapping requests of one user, and users whose accepted events arrived out
        of their ``properties.n`` order (empty when per-user order held)."""
        errors = list(self.overlaps)
        last: dict[str, int] = {}
        for event in self.events():
            user, n = event.get("userId"), event["properties"]["n"]
            if user in last and n <= last[user]:
                errors.append(f"{user}: event {n} arrived after event {last[user]}")
            last[user] = max(n, last.get(user, n))
        return errors

    # serving -----------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _recv(self, conn: socket.socket) -> tuple[bytes, float]:
        data, ancdata, _, _ = conn.recvmsg(1 << 16, socket.CMSG_SPACE(16))
        for level, kind, raw in ancdata:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(raw) >= 16:
                sec, nsec = struct.unpack("qq", raw[:16])
                return data, sec + nsec / 1e9
        return data, time.time()

    def _serve(self, conn: socket.socket) -> None:
        buf, at = b"", 0.0
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data, stamp = self._recv(conn)
                    if not data:
                        return
                    if not buf:
                        at = stamp
                    buf += data
                head, _, rest = buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(rest) < length:
                    data, _ = self._recv(conn)
                    if not data:
                        return
                    rest += data
                body, buf = rest[:length], rest[length:]
                status = self._handle(at, body)
                reply = b"{}"
                conn.sendall(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (status, len(reply), reply))
                if buf:
                    at = time.time()
        except OSError:
            return
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    def _handle(self, at: float, body: bytes) -> int:
        data = json.loads(body)
        payloads = data if isinstance(data, list) else [data]
        users = {p.get("userId") for p in payloads}
        arrival = Arrival(at, payloads)
        with self._lock:
            for user in users:
                if self._open.get(user):
                    self.overlaps.append(f"{user}: a request arrived while another of "
                                         "theirs was in flight")
                self._open[user] = self._open.get(user, 0) + 1
            self.arrivals.append(arrival)
            self._answering += 1
            self.peak = max(self.peak, self._answering)
        try:
            time.sleep(self.delay())
            status = self.fail(payloads) or 200
        finally:
            with self._lock:
                self._answering -= 1
                for user in users:
                    self._open[user] -= 1
        arrival.status = status
        return status
