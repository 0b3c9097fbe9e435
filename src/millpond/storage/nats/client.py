"""The few nats-py calls whose annotations are incomplete (``**opts`` without a type, a
``Future`` without its parameter), typed once here so the backend checks strictly."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import cast

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import StreamConfig, StreamInfo

__all__ = ["LogClient", "add_stream", "jetstream", "subscribe"]


#: One ``Name: Value`` line: a name of visible characters other than ``:``, optional spaces.
_HEADER = re.compile(rb"^([!-9;-~]+):[ \t]*(.*?)[ \t]*\r?$", re.MULTILINE)


def _header_lines(raw: bytes) -> dict[str, str]:
    """The header block's ``Name: Value`` lines, as nats-py's own parser reads them (a
    malformed name is skipped, a value is UTF-8 with replacements) in one regex pass rather
    than its split, strip and per-character check of every name: that was a third of the
    cost of a direct get (each answer carries eight headers)."""
    return {name.decode("ascii"): value.decode("utf-8", "replace")
            for name, value in _HEADER.findall(raw)}


class LogClient(Client):
    """nats-py's client with a faster header parser: the log reads every event through
    headers (its seq, its time), tens of thousands a second."""

    _parse_header_lines = staticmethod(_header_lines)


def jetstream(nc: Client, timeout: float) -> JetStreamContext:
    """The JetStream API on ``nc``, its requests timing out after ``timeout`` seconds."""
    make = cast("Callable[..., JetStreamContext]", nc.jetstream)  # pyright: ignore[reportUnknownMemberType]
    return make(timeout=timeout)


async def subscribe(nc: Client, subject: str,
                    cb: Callable[[Msg], Awaitable[None]] | None = None) -> Subscription:
    """A core subscription to ``subject`` (``cb`` per message, or read with ``next_msg``)."""
    sub = cast("Callable[..., Awaitable[Subscription]]", nc.subscribe)  # pyright: ignore[reportUnknownMemberType]
    return await sub(subject, cb=cb)


async def add_stream(js: JetStreamContext, config: StreamConfig) -> StreamInfo:
    add = cast("Callable[..., Awaitable[StreamInfo]]", js.add_stream)  # pyright: ignore[reportUnknownMemberType]
    return await add(config)


