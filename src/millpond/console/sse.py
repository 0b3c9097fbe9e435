"""Server-sent event streams: the live parts of the console (Debugger, replay and import
progress).

Each stream is an async generator of ``(event name, html)`` pairs; the HTML is rendered
by the server's autoescaped templates, so the page only inserts markup the server made.
A comment line every few seconds keeps proxies from closing an idle stream, and every
stream ends as soon as the server starts to stop (:meth:`Streams.stop`), so an open
console tab never holds up a graceful shutdown.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.responses import StreamingResponse

HEARTBEAT_SECONDS = 10.0


class Streams:
    """The console's open streams' shared stop flag."""

    def __init__(self) -> None:
        self.stopping = False

    def stop(self) -> None:
        self.stopping = True

    def response(self, events: AsyncIterator[tuple[str, str]]) -> StreamingResponse:
        return StreamingResponse(self._encode(events), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store",
                                          "X-Accel-Buffering": "no"})

    async def _encode(self, events: AsyncIterator[tuple[str, str]]) -> AsyncIterator[bytes]:
        yield b": connected\n\n"
        try:
            async for name, data in events:
                if self.stopping:
                    return
                yield encode(name, data)
        except asyncio.CancelledError:  # the client went away
            return


def encode(name: str, data: str) -> bytes:
    """One SSE message; every line of ``data`` is its own ``data:`` field."""
    lines = "".join(f"data: {line}\n" for line in data.replace("\r", "").split("\n"))
    return f"event: {name}\n{lines}\n".encode()


async def ticks(streams: Streams, every: float) -> AsyncIterator[None]:
    """Yield every ``every`` seconds until the server stops."""
    while not streams.stopping:
        yield None
        await asyncio.sleep(every)
