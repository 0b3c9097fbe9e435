"""Whether the storage can take writes now: an *unavailable episode* (a full disk) from
its first refused write to the first write that succeeds again.

Why episodes, not errors: with the disk full every request and every checkpoint fails,
hundreds a second. The owner needs one warning when it starts, one line when it ends
(how long, how many writes were refused), and the state in stats and ``/metrics``
meanwhile, not a log line per request. Nothing needs a restart: the first write that
commits after space returns ends the episode.

One :class:`StorageHealth` per opened storage (``Storage.health``); a backend calls
:meth:`StorageHealth.failed` where it turns its own error into
:class:`~millpond.storage.contracts.StorageUnavailable`, and :meth:`StorageHealth.ok`
after a write committed.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

log = logging.getLogger("millpond.storage")


class StorageHealth:
    """The current unavailable episode, if any, and the totals since start (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: Cheap to read on every commit: set only during an episode.
        self.failing = False
        self._reason = ""
        self._since = 0.0
        self._refused = 0
        #: Writes refused since the process started, and episodes begun (for ``/metrics``).
        self.refused_total = 0
        self.episodes_total = 0

    def failed(self, reason: str) -> None:
        """A write was refused for ``reason``: begin an episode (logged once) or count it."""
        with self._lock:
            first = not self.failing
            if first:
                self.failing = True
                self._reason, self._since, self._refused = reason, time.time(), 0
                self.episodes_total += 1
            self._refused += 1
            self.refused_total += 1
        if first:
            log.error("storage unavailable: %s; answering 503 with Retry-After and holding "
                      "delivery checkpoints until a write succeeds again", reason,
                      extra={"phase": "storage_unavailable", "reason": reason})

    def ok(self) -> None:
        """A write committed: end the episode, if one is open (logged once)."""
        if not self.failing:
            return
        with self._lock:
            if not self.failing:
                return
            self.failing = False
            seconds, refused, reason = time.time() - self._since, self._refused, self._reason
        log.warning("storage writable again after %.1f s (%s); %s writes were refused "
                    "meanwhile", seconds, reason, f"{refused:,}",
                    extra={"phase": "storage_recovered", "seconds": round(seconds, 3),
                           "refused": refused})

    def snapshot(self) -> dict[str, Any] | None:
        """The open episode (``reason``, ``since`` Unix seconds, ``refused`` writes), or
        None while writes succeed."""
        with self._lock:
            if not self.failing:
                return None
            return {"reason": self._reason, "since": self._since, "refused": self._refused}
