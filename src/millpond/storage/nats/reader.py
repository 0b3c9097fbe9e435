"""Reading the stream by sequence: JetStream's direct gets, in batches.

Why direct gets rather than a consumer: the log is read from any position again and again
(the live feed, the profile follower, look-ups by seq); a consumer is server state to create
and clean up for each, a direct get is one request. Batches (``{"seq", "batch"}``) return up
to ``batch`` messages and an end-of-batch status carrying how many more there are.

Read-after-write: any replica may answer a direct get, and a follower may not have applied
what the leader acknowledged yet. Every request carries ``min_last_seq`` (the highest seq
this process has seen acknowledged or notified): a replica behind it hands the request to
the leader (nats-server 2.12+), so a read never misses an event whose append returned.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, TypeVar

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from millpond.storage.contracts import StorageUnavailable
from millpond.storage.models import StoredEvent
from millpond.storage.nats.client import subscribe

__all__ = ["TS_HEADER", "direct_batch", "direct_get", "stored_event"]

_T = TypeVar("_T")

#: The event time (Unix ms) travels as a header: the body is the event's JSON as appended.
TS_HEADER = "Millpond-Ts"
#: Messages per batch request: large enough to amortise the round trip, small enough that
#: one answer stays well under the client's buffers.
BATCH = 1000


def stored_event(msg: Msg) -> StoredEvent:
    headers = msg.headers or {}
    return StoredEvent(int(headers["Nats-Sequence"]), int(headers.get(TS_HEADER, 0)), msg.data)


def _status(msg: Msg) -> str | None:
    return msg.headers.get("Status") if msg.headers and not msg.data else None


async def direct_get(nc: Client, stream: str, seq: int, min_last_seq: int,
                     timeout: float, convert: Callable[[Msg], _T] = stored_event) -> _T | None:
    """The event at ``seq`` exactly, or None (never stored, or deleted)."""
    request: dict[str, Any] = {"seq": seq}
    if min_last_seq:
        request["min_last_seq"] = min_last_seq
    try:
        msg = await nc.request(f"$JS.API.DIRECT.GET.{stream}", json.dumps(request).encode(),
                               timeout=timeout)
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as exc:
        raise StorageUnavailable(f"the log did not answer a read: {exc!r}") from exc
    status = _status(msg)
    if status == "404":
        return None
    if status is not None:
        raise StorageUnavailable(f"the log refused a read: {status} {msg.headers}")
    return convert(msg)


async def direct_batch(nc: Client, stream: str, start: int, batch: int, min_last_seq: int,
                       timeout: float, subject: str | None = None,
                       convert: Callable[[Msg], _T] = stored_event) -> tuple[list[_T], int]:
    """Up to ``batch`` events from ``start`` on (of ``subject`` only, wildcards allowed), and
    how many more the stream holds after them (0: the end)."""
    request: dict[str, Any] = {"seq": start, "batch": batch}
    if subject is not None:
        request["next_by_subj"] = subject
    if min_last_seq:
        request["min_last_seq"] = min_last_seq
    inbox = nc.new_inbox()
    events: list[_T] = []
    end: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()

    async def on_msg(msg: Msg) -> None:  # a callback, not next_msg: no task per message
        if _status(msg) is None:
            events.append(convert(msg))
        elif not end.done():
            end.set_result(msg)

    sub = await subscribe(nc, inbox, on_msg)
    try:
        await nc.publish(f"$JS.API.DIRECT.GET.{stream}", json.dumps(request).encode(),
                         reply=inbox)
        try:
            msg = await asyncio.wait_for(end, timeout)
        except TimeoutError as exc:
            raise StorageUnavailable("the log did not answer a read in time") from exc
        status = _status(msg)
        if status == "204":  # end of batch
            return events, int((msg.headers or {}).get("Nats-Num-Pending", 0))
        if status == "404":  # nothing at or after start
            return events, 0
        raise StorageUnavailable(f"the log refused a read: {status} {msg.headers}")
    finally:
        await sub.unsubscribe()
