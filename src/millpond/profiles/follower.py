"""Keeps the profile store up to date by following the log, like a pump with one reader.

Why a follower and not an update inside the collector: the collector's answer must wait
only for the log commit; profiles are derived data that can be rebuilt from the log at
any time, so they trail it by a moment and resume from their checkpoint after a restart.
"""

from __future__ import annotations

import asyncio
import logging
import threading

import msgspec

from millpond.log.base import EventLog
from millpond.profiles.store import ProfileStore

PROFILE_TYPES = (b'"type":"identify"', b'"type":"group"', b'"type":"alias"')
log = logging.getLogger("millpond.profiles")


class ProfileFollower:
    def __init__(self, events: EventLog, profiles: ProfileStore, chunk: int = 5000):
        self.events = events
        self.profiles = profiles
        self.chunk = chunk
        self._decode = msgspec.json.Decoder().decode
        self._lock = threading.Lock()  # the API may catch up too (read-your-writes)

    def catch_up_once(self) -> int:
        """Apply the next chunk after the checkpoint; returns how many log rows it consumed."""
        with self._lock:
            return self._catch_up_once()

    def _catch_up_once(self) -> int:
        after = self.profiles.checkpoint()
        rows = self.events.read_after(after, self.chunk)
        if not rows:
            return 0
        relevant = []
        for seq, body in rows:
            if any(marker in body for marker in PROFILE_TYPES):
                event = self._decode(body)
                if event.get("type") in ("identify", "group", "alias"):
                    event["seq"] = seq
                    relevant.append(event)
        self.profiles.apply_many(relevant, checkpoint=rows[-1][0])
        return len(rows)

    async def run(self) -> None:
        while True:
            try:
                consumed = await asyncio.to_thread(self.catch_up_once)
            except Exception:  # noqa: BLE001 - keep following; the checkpoint did not move
                log.exception("profile follower failed; retrying in 1 s")
                await asyncio.sleep(1)
                continue
            if consumed < self.chunk:
                await self.events.wait_for(self.profiles.checkpoint(), 1.0)
