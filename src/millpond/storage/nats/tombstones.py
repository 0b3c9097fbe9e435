"""What this process deleted from the stream lately, so that its own reads never see it.

Why: a delete is acknowledged once the stream's leader committed it, but reads are
direct gets that any replica may answer, and a follower applies the delete a little later.
``min_last_seq`` holds a lagging follower back for appends, not for deletes, so a read
right after an expiry or an erasure could still return what was removed (a loaded CI run
read ten expired events back). The log remembers its own deletes for longer than a
follower takes to apply them and drops them from every read. Another process's deletes
reach this one as fast as the replica answering it applies them; retention and erasure
do not promise more than that across processes (delivery screens erased people anyway).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

__all__ = ["Tombstones"]

#: How long a delete is remembered: far longer than a follower takes to apply a committed
#: entry (milliseconds; seconds while it recovers).
REMEMBER_SECONDS = 120.0


class Tombstones:
    """Seqs deleted by this process in the last :data:`REMEMBER_SECONDS`; thread-safe."""

    def __init__(self, remember: float = REMEMBER_SECONDS):
        self._remember = remember
        self._lock = threading.Lock()
        #: seq -> when it was deleted; insertion order is time order, so expiry pops the front
        self._deleted: dict[int, float] = {}

    def add(self, seqs: Iterable[int]) -> None:
        now = time.monotonic()
        with self._lock:
            for seq in seqs:
                self._deleted.pop(seq, None)
                self._deleted[seq] = now
            self._forget_old(now)

    def __contains__(self, seq: int) -> bool:
        return seq in self._deleted

    def __bool__(self) -> bool:
        with self._lock:
            self._forget_old(time.monotonic())
            return bool(self._deleted)

    def _forget_old(self, now: float) -> None:
        deleted, cutoff = self._deleted, now - self._remember
        while deleted:
            seq = next(iter(deleted))
            if deleted[seq] > cutoff:
                break
            del deleted[seq]
