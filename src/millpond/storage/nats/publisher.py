"""Publishing to the stream: in order, pipelined, acknowledged only by a PubAck, retried
through a leader change with the same ``Nats-Msg-Id``.

Why not nats-py's ``publish_async``: its reply handler raises instead of failing the future
when the server answers an error (``duplicate message id is in process``), so the caller
waits forever. This module keeps its own reply subscription and reads every answer itself.

How an append goes: all its messages are written to the connection's buffer as one
command (:meth:`LogClient.publish_frames`; under one lock, so appends from one thread
land in the order they were submitted, and an append's events get increasing sequences),
then every PubAck is awaited together (each read straight from the parser:
:meth:`LogClient.answer_directly`). An event without an answer in ``ack_wait``, or
answered with a transient error (no stream leader during an election, JetStream
unavailable, the same id still in process), is sent again with the same ``Nats-Msg-Id``
until ``publish_deadline``: the stream stores it once, and a re-send of one that was
stored is answered ``duplicate`` with the first one's sequence. What a fault costs: the
re-sent events land after the ones of the same append that got through.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from nats.aio.subscription import Subscription

from millpond.errors import TooLarge
from millpond.storage.contracts import StorageUnavailable
from millpond.storage.nats.client import Frame, LogClient, subscribe
from millpond.storage.nats.settings import LogSettings

__all__ = ["Ack", "Publisher"]

#: The stream refuses a message over its ``max_msg_size``: no retry can change that.
_TOO_LARGE = 10054

#: (sequence, duplicate): where the stream stored a message, or stored it before.
Ack = tuple[int, bool]
#: (subject, payload, header block) of one message to publish
#: (:func:`~millpond.storage.nats.client.header_block`).
Outgoing = tuple[str, bytes, bytes]


class _PubAck(msgspec.Struct):
    """JetStream's answer to a publish (the fields the log reads)."""

    seq: int = 0
    duplicate: bool = False
    error: dict[str, Any] | None = None


_decode_ack = msgspec.json.Decoder(_PubAck).decode


class _Retry(Exception):
    """A transient answer: send the message again."""


#: An answer as it came: (data, raw header block).
Answer = tuple[bytes, "bytes | None"]


def read_ack(answer: Answer) -> Ack:
    """The PubAck in ``answer``; raises _Retry for a transient error, TooLarge for a
    message the stream never takes."""
    data, headers = answer
    if headers is not None and headers.startswith(b"NATS/1.0 503"):  # no responders
        raise _Retry("no stream leader answered (an election?)")
    try:
        ack = _decode_ack(data)
    except msgspec.DecodeError as exc:
        raise _Retry(f"an unreadable answer ({exc})") from exc
    error = ack.error
    if error is not None:
        if error.get("err_code") == _TOO_LARGE:
            raise TooLarge(f"an event is over the log's max_msg_size: "
                           f"{error.get('description')}")
        raise _Retry(str(error.get("description") or error))
    if not ack.seq:
        raise _Retry(f"an answer without a sequence ({data[:80]!r})")
    return ack.seq, ack.duplicate


class Publisher:
    """Publishes batches to the stream on one connection's event loop."""

    def __init__(self, nc: LogClient, settings: LogSettings):
        self._nc = nc
        self._s = settings
        self._prefix = nc.new_inbox()
        self._pending: dict[bytes, asyncio.Future[Answer]] = {}
        self._order = asyncio.Lock()
        self._next = 0
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._sub = await subscribe(self._nc, f"{self._prefix}.*")
        self._nc.answer_directly(self._sub, self._on_reply)

    def _on_reply(self, subject: bytes, data: bytes, headers: bytes | None) -> None:
        future = self._pending.pop(subject.rpartition(b".")[2], None)
        if future is not None and not future.done():
            future.set_result((data, headers))

    async def _send(self, items: Sequence[Outgoing],
                    todo: list[int]) -> list[tuple[int, bytes, asyncio.Future[Answer]]]:
        loop = asyncio.get_running_loop()
        sent: list[tuple[int, bytes, asyncio.Future[Answer]]] = []
        async with self._order:
            frames: list[Frame] = []
            for i in todo:
                self._next += 1
                token = format(self._next, "x")
                key = token.encode()
                future: asyncio.Future[Answer] = loop.create_future()
                self._pending[key] = future
                subject, payload, headers = items[i]
                frames.append((subject, f"{self._prefix}.{token}", headers, payload))
                sent.append((i, key, future))
            try:
                await self._nc.publish_frames(frames)
            except Exception as exc:  # closed, reconnecting with a full buffer
                for _, token, future in sent:
                    self._pending.pop(token, None)
                    future.set_exception(_Retry(f"not sent: {exc!r}"))
        return sent

    async def publish(self, items: Sequence[Outgoing],
                      after_send: Callable[[], None] | None = None) -> list[Ack]:
        """Publish ``items`` and return each one's Ack, in order. Raises StorageUnavailable
        when some are still unacknowledged at the deadline (the caller's retry, with the
        same ids, stores nothing twice), TooLarge for a message over the limit.
        ``after_send`` is called once every item was written the first time (the caller
        lets the next append go)."""
        acks: list[Ack | None] = [None] * len(items)
        todo: list[int] = list(range(len(items)))
        maybe_stored: set[int] = set()  # sent, unanswered: a later "duplicate" is our own
        deadline = time.monotonic() + self._s.publish_deadline
        delay, last_error = 0.05, ""
        while todo:
            sent = await self._send(items, todo)
            if after_send is not None:
                after_send()
                after_send = None
            remaining = max(deadline - time.monotonic(), 0.05)
            await asyncio.wait([f for _, _, f in sent], timeout=min(self._s.ack_wait, remaining))
            todo = []
            answered = True
            for i, token, future in sent:
                if not future.done():
                    self._pending.pop(token, None)
                    future.cancel()
                    maybe_stored.add(i)
                    todo.append(i)
                    last_error, answered = "no acknowledgement in time", False
                    continue
                try:
                    seq, duplicate = read_ack(future.result())
                except _Retry as exc:
                    todo.append(i)
                    last_error = str(exc)
                    continue
                acks[i] = (seq, duplicate and i not in maybe_stored)
            if not todo:
                break
            if time.monotonic() >= deadline:
                raise StorageUnavailable(
                    f"the log did not acknowledge {len(todo)} of {len(items)} events within "
                    f"{self._s.publish_deadline:g}s: {last_error}", retry_after=2.0)
            if answered:  # a definite error: back off; a silence already waited ack_wait
                await asyncio.sleep(min(delay, max(deadline - time.monotonic(), 0)))
                delay = min(delay * 2, 1.0)
        return [a for a in acks if a is not None]

    async def close(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None
