"""Work a request asked for, stopped when its client goes away.

Why: uvicorn does not cancel a handler whose client left, so a request that reads the
whole log runs to its end for nobody. The console asks for a segment preview as one
types (htmx drops the previous request: ``hx-sync="this:replace"``), and a preview reads
the whole log: at 1.5 million events each took 4.5 s, and after eight dropped ones the
ninth answered in 35 s, while the server's CPU went to work nobody would read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

from millpond.errors import ClientClosed

T = TypeVar("T")
#: How often the connection is checked while the work runs, seconds.
POLL_SECONDS = 0.2

log = logging.getLogger("millpond.server")


async def unless_client_leaves(request: Request, work: Awaitable[T]) -> T:
    """``work``'s result; if the client disconnects first, ``work`` is cancelled (it
    stops at its next ``await``) and :class:`~millpond.errors.ClientClosed` is raised."""
    task = asyncio.ensure_future(work)
    started = time.monotonic()
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=POLL_SECONDS)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                elapsed = time.monotonic() - started
                log.info("%s %s: the client closed the request after %.1f s; its work "
                         "stopped", request.method, request.url.path, elapsed,
                         extra={"phase": "abandoned", "path": request.url.path})
                raise ClientClosed("the client closed the request before the answer was "
                                   "ready")
    finally:
        if not task.done():  # this handler was cancelled itself (a server stop)
            task.cancel()
