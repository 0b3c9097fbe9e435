"""A log, a profile follower and a segment engine in memory, driven step by step."""

from __future__ import annotations

from typing import Any

import msgspec

from millpond.collector.validation import normalize
from millpond.profiles.follower import ProfileFollower
from millpond.segments.engine import SegmentEngine
from millpond.segments.outputs import COMPUTED_SOURCE_ID
from millpond.storage import Storage
from millpond.storage.models import Segment
from millpond.timeutil import format_ms

DAY = 86_400_000


class Clock:
    """An injectable clock: tests move it instead of sleeping."""

    def __init__(self, now_ms: int) -> None:
        self.now = now_ms

    def __call__(self) -> int:
        return self.now


class Harness:
    def __init__(self, storage: Storage, clock: Clock) -> None:
        self.storage = storage
        self.clock = clock
        self.follower = ProfileFollower(storage.log, storage.profiles)
        self.engine = SegmentEngine(storage, clock=clock, profiles_upto=self._profiles_upto)
        self.engine.ensure_source()

    async def _profiles_upto(self, seq: int) -> None:
        while await self.follower.catch_up_once():
            pass

    async def send(self, *messages: dict[str, Any], source_id: str = "src_web") -> None:
        events = [normalize(dict(m), source_id=source_id, received_ms=self.clock())
                  for m in messages]
        await self.storage.log.append(events)

    async def settle(self) -> None:
        """Let the engine follow the log until nothing is left (its own outputs too)."""
        while await self.engine.catch_up_once():
            pass

    async def add_segment(self, sid: str, key: str, definition: dict) -> Segment:
        self.storage.segments.create(Segment(sid, key, key.title(), definition,
                                             created_ms=self.clock()))
        return await self.engine.build(sid)

    async def audience_events(self) -> list[dict[str, Any]]:
        rows = await self.storage.log.read(0, 1_000_000)
        out = []
        for row in rows:
            event = msgspec.json.decode(row.body)
            if event.get("source_id") == COMPUTED_SOURCE_ID:
                out.append(event)
        return out


class Counted:
    """Counts the calls of one method of a store, passing them through."""

    def __init__(self, target: object, name: str) -> None:
        self.calls = 0
        inner = getattr(target, name)

        def counted(*args, **kwargs):
            self.calls += 1
            return inner(*args, **kwargs)

        setattr(target, name, counted)


def track(mid: str, ts_ms: int, event: str = "Order Completed", *, user_id: str | None = None,
          anonymous_id: str | None = None, **properties: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": "track", "event": event, "messageId": mid,
                           "timestamp": format_ms(ts_ms), "properties": properties}
    if user_id:
        msg["userId"] = user_id
    if anonymous_id:
        msg["anonymousId"] = anonymous_id
    return msg


def identify(mid: str, ts_ms: int, *, user_id: str | None = None,
             anonymous_id: str | None = None, **traits: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": "identify", "messageId": mid,
                           "timestamp": format_ms(ts_ms), "traits": traits}
    if user_id:
        msg["userId"] = user_id
    if anonymous_id:
        msg["anonymousId"] = anonymous_id
    return msg


def alias(mid: str, ts_ms: int, previous_id: str, user_id: str) -> dict[str, Any]:
    return {"type": "alias", "messageId": mid, "timestamp": format_ms(ts_ms),
            "previousId": previous_id, "userId": user_id}


def run_async(fn):
    """Run an ``async def`` test body in its own event loop (the suite has no asyncio
    plugin; every async test here is one ``asyncio.run``)."""
    import asyncio
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))

    return wrapper
