"""The few nats-py calls whose annotations are incomplete (``**opts`` without a type, a
``Future`` without its parameter), typed once here so the backend checks strictly."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from typing import cast

from nats import errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import StreamConfig, StreamInfo

__all__ = ["Frame", "LogClient", "add_stream", "header_block", "jetstream", "subscribe"]

#: (subject, reply subject, header block, payload) of one message of a batch.
Frame = tuple[str, str, bytes, bytes]


#: One ``Name: Value`` line: a name of visible characters other than ``:``, optional spaces.
_HEADER = re.compile(rb"^([!-9;-~]+):[ \t]*(.*?)[ \t]*\r?$", re.MULTILINE)


def _header_lines(raw: bytes) -> dict[str, str]:
    """The header block's ``Name: Value`` lines, as nats-py's own parser reads them (a
    malformed name is skipped, a value is UTF-8 with replacements) in one regex pass rather
    than its split, strip and per-character check of every name: that was a third of the
    cost of a direct get (each answer carries eight headers)."""
    return {name.decode("ascii"): value.decode("utf-8", "replace")
            for name, value in _HEADER.findall(raw)}


def header_block(headers: Sequence[tuple[str, str]]) -> bytes:
    """The ``NATS/1.0`` header block of ``headers``, as nats-py's publish writes it. The
    caller's names and values are its own (fixed names; values that are digests, numbers
    and compact JSON, never a line break), so none of nats-py's per-character checks."""
    return ("NATS/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n").encode()


#: What answers a subscription's messages directly: (subject, data, raw header block).
DirectHandler = Callable[[bytes, bytes, "bytes | None"], None]


class LogClient(Client):
    """nats-py's client with a faster header parser (the log reads every event through
    headers, its seq and its time, tens of thousands a second), a batch publish, and
    subscriptions answered without a message object."""

    _parse_header_lines = staticmethod(_header_lines)

    def __init__(self) -> None:
        super().__init__()
        self._direct: dict[int, DirectHandler] = {}

    def answer_directly(self, sub: Subscription, handler: DirectHandler) -> None:
        """Hand ``sub``'s messages to ``handler`` as they are parsed, on the connection's
        loop. Why: the publisher's PubAcks, one per event; nats-py builds a ``Msg`` for
        each, queues it and wakes the subscription's task, about a third of the
        publisher's CPU per event, for a few bytes of JSON read at once."""
        self._direct[sub._id] = handler  # pyright: ignore[reportPrivateUsage]

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes,
                           headers: bytes | None) -> None:  # pyright: ignore[reportIncompatibleMethodOverride]
        handler = self._direct.get(sid)
        if handler is None:
            await super()._process_msg(sid, subject, reply, data, headers)  # pyright: ignore[reportArgumentType]
            return
        self.stats["in_msgs"] += 1
        self.stats["in_bytes"] += len(data)
        handler(subject, data, headers)

    async def publish_frames(self, frames: Sequence[Frame]) -> None:
        """Publish ``frames`` as one write to the connection's buffer: what ``publish``
        does per message (an ``HPUB`` line, the headers, the payload), once for an
        append's messages. Why: per message, nats-py's ``publish`` checks the subject, the
        reply and each header name and value character by character and queues a command
        of its own, about half the publisher's CPU per event; the log builds its subjects
        from checked tokens and its headers itself (:func:`header_block`). The same
        errors as ``publish`` (closed, draining, too large, the buffer full while
        reconnecting)."""
        if self.is_closed:
            raise errors.ConnectionClosedError
        if self.is_draining_pubs:
            raise errors.ConnectionDrainingError
        parts: list[bytes] = []
        size = 0
        for subject, reply, hdr, payload in frames:
            if len(payload) > self._max_payload:
                raise errors.MaxPayloadError
            parts.append(f"HPUB {subject} {reply} {len(hdr)} {len(hdr) + len(payload)}\r\n"
                         .encode())
            parts.append(hdr)
            parts.append(payload)
            parts.append(b"\r\n")
            size += len(payload)
        command = b"".join(parts)
        if not self.is_connected and (self._max_pending_size <= 0 or len(command)
                                      + self._pending_data_size > self._max_pending_size):
            raise errors.OutboundBufferLimitError
        self.stats["out_msgs"] += len(frames)
        self.stats["out_bytes"] += size
        await self._send_command(command)
        if self._flush_queue is not None and self._flush_queue.empty():
            await self._flush_pending()


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


