"""Keeps the profile store up to date by following the log, like a pump with one reader.

Why a follower and not an update inside the collector: the collector's answer must wait
only for the log commit; profiles are derived data that can be rebuilt from the log at
any time, so they trail it by a moment and resume from their checkpoint after a restart.
"""

from __future__ import annotations

import asyncio
import logging
import time

import msgspec

from millpond.storage.contracts import EventLog, ProfileStore, StorageUnavailable
from millpond.storage.models import StoredEvent

PROFILE_TYPES = frozenset({"identify", "group", "alias"})
log = logging.getLogger("millpond.profiles")


#: Let commits pile up this long before reading: one read and one profile transaction per
#: interval, not one per group commit (which would cost an fsync each).
COALESCE_SECONDS = 0.2
#: Persist the position at least this often while only non-profile events go by.
CHECKPOINT_EVERY = 5.0


class ProfileFollower:
    def __init__(self, events: EventLog, profiles: ProfileStore, chunk: int = 5000):
        self.events = events
        self.profiles = profiles
        self.chunk = chunk
        self._decode = msgspec.json.Decoder().decode
        self._lock = asyncio.Lock()  # the API may catch up too (read-your-writes)
        self._position: int | None = None  # in memory; may run ahead of the stored one
        self._saved_at = time.monotonic()

    async def catch_up_once(self) -> int:
        """Apply the profile events after the checkpoint, a chunk at most; returns how
        many it read (``chunk``: there may be more)."""
        async with self._lock:
            return await self._catch_up_once()

    async def _catch_up_once(self) -> int:
        after = self.profiles.checkpoint() if self._position is None else self._position
        upto = self.events.last_seq()
        if upto <= after:
            return 0
        # Only the profile types of (after, upto] are read and decoded. Seqs may have
        # gaps: the position is the last seq read when the chunk is full, else ``upto``.
        rows = await self.events.read(after, self.chunk, upto_seq=upto, types=PROFILE_TYPES)
        until = rows[-1].seq if len(rows) >= self.chunk else upto
        # Stored position = everything up to it is applied. Skipping only other types may
        # move it lazily: after a crash those seqs are just read again.
        if rows or time.monotonic() - self._saved_at >= CHECKPOINT_EVERY:
            await asyncio.to_thread(self._apply, rows, until)
            self._saved_at = time.monotonic()
        self._position = until
        return len(rows)

    def _apply(self, rows: list[StoredEvent], until: int) -> None:
        """Decode the chunk's events and apply them, in a worker thread: decoding a chunk
        of identifies is milliseconds of CPU that the event loop, which answers the
        collector's requests, should not spend."""
        relevant = []
        for row in rows:
            event = self._decode(row.body)
            event["seq"] = row.seq
            relevant.append(event)
        self.profiles.apply_many(relevant, checkpoint=until)

    async def run(self) -> None:
        while True:
            try:
                read = await self.catch_up_once()
            except StorageUnavailable:  # a full disk: the storage logs it, once
                await asyncio.sleep(1)
                continue
            except Exception:  # noqa: BLE001 - keep following; the checkpoint did not move
                log.exception("profile follower failed; retrying in 1 s")
                await asyncio.sleep(1)
                continue
            if read < self.chunk:
                await self.events.wait(self._position or 0, 1.0)
                await asyncio.sleep(COALESCE_SECONDS)
