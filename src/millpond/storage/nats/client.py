"""The few nats-py calls whose annotations are incomplete (``**opts`` without a type, a
``Future`` without its parameter), typed once here so the backend checks strictly."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import cast

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import StreamConfig, StreamInfo

__all__ = ["add_stream", "jetstream", "subscribe"]


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


