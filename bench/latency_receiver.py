"""A webhook receiver that answers after a fixed latency and checks per-user order.

Run in its own process by ``bench/deliver.py --latency-ms`` (so that it does not share a
GIL with the pump it measures): an asyncio HTTP/1.1 keep-alive server that, for every
request, notes its users as in flight, waits ``latency`` seconds, then answers 200.
Per-user order is checked on what arrives: a request carrying a user whose previous
request is still unanswered is an *overlap*, and a user's events whose ``seq`` does not
increase are *out of order*. The parent reads the report through a pipe.
"""

from __future__ import annotations

import asyncio
import json
from multiprocessing.connection import Connection


class Checker:
    def __init__(self) -> None:
        self.requests = self.events = self.overlaps = self.out_of_order = 0
        self.open: dict[str, int] = {}
        self.last: dict[str, int] = {}
        self.answering = self.peak = 0

    def arrive(self, payloads: list[dict]) -> list[str]:
        self.requests += 1
        self.events += len(payloads)
        self.answering += 1
        self.peak = max(self.peak, self.answering)
        users = []
        for p in payloads:
            user, seq = str(p.get("userId")), int(p.get("seq", 0))
            if self.open.get(user):
                self.overlaps += 1
            if seq <= self.last.get(user, -1):
                self.out_of_order += 1
            self.last[user] = max(seq, self.last.get(user, -1))
            users.append(user)
        for user in set(users):
            self.open[user] = self.open.get(user, 0) + 1
        return users

    def answer(self, users: list[str]) -> None:
        self.answering -= 1
        for user in set(users):
            self.open[user] -= 1

    def report(self) -> dict:
        return {"requests": self.requests, "events": self.events, "overlaps": self.overlaps,
                "out_of_order": self.out_of_order, "peak": self.peak}


async def _serve(pipe: Connection, latency: float) -> None:
    checker = Checker()
    reply = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                data = json.loads(await reader.readexactly(length))
                users = checker.arrive(data if isinstance(data, list) else [data])
                await asyncio.sleep(latency)
                checker.answer(users)
                writer.write(reply)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    pipe.send(server.sockets[0].getsockname()[1])
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, pipe.recv)  # "report"
    pipe.send(checker.report())
    server.close()


def serve(pipe: Connection, latency: float) -> None:
    """Process entry point: send the port, serve until asked for the report."""
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_serve(pipe, latency))
