"""Grouping mapped items into requests: by ``group_key``, by count, by bytes, by linger.

Why the batcher hands out batches in the order they were *started*: that order is the
order of each group's oldest item, and a batch never starts before an earlier batch of
the same users finished (:mod:`millpond.delivery.inflight`), so items going to the same
endpoint leave in log order (per-user order kept), and a group that waits for its linger
does not overtake an older, already full one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Work:
    """One mapped payload on its way out: its ledger key (the event's ``seq``; a replay's
    scan position), its action, its size, and its user (``userId`` or ``anonymousId``:
    what per-user order is kept for, see :mod:`millpond.delivery.inflight`)."""

    seq: int
    action: str
    payload: Any
    event: dict[str, Any]
    size: int
    user: str = ""


@dataclass(slots=True)
class Batch:
    """Items that may share one request (same ``group_key``), oldest first."""

    key: str
    items: list[Work] = field(default_factory=list)
    size: int = 0
    started: float = 0.0

    @property
    def action(self) -> str:
        return self.items[0].action

    def __len__(self) -> int:
        return len(self.items)


class Batcher:
    """Open batches per group key; ``add`` and ``due`` return batches ready to send.

    Limits: at most ``max_events`` items and ``max_bytes`` of payload per batch (an item
    bigger than ``max_bytes`` travels alone rather than never), and no item waits more
    than ``linger`` seconds after its batch was started. With ``linger`` 0 nothing waits
    for later events, but items that arrive together (one chunk of the log) still share
    a request: the pump asks for ``due`` batches after each chunk.
    """

    def __init__(self, max_events: int, max_bytes: int, linger: float,
                 clock: Callable[[], float] = time.monotonic):
        self.max_events = max(1, int(max_events))
        self.max_bytes = max(1, int(max_bytes))
        self.linger = max(0.0, float(linger))
        self._clock = clock
        self._open: dict[str, Batch] = {}

    def add(self, key: str, work: Work) -> list[Batch]:
        """Add ``work`` to its group; return batches that became ready (0, 1 or 2)."""
        ready: list[Batch] = []
        batch = self._open.get(key)
        if batch is not None and batch.items and batch.size + work.size > self.max_bytes:
            ready.append(self._open.pop(key))
            batch = None
        if batch is None:
            batch = self._open[key] = Batch(key, started=self._clock())
        batch.items.append(work)
        batch.size += work.size
        if len(batch.items) >= self.max_events or batch.size >= self.max_bytes:
            ready.append(self._open.pop(key))
        return ready

    def due(self) -> list[Batch]:
        """Batches whose linger has run out, oldest first."""
        if not self._open:
            return []
        now = self._clock()
        keys = [k for k, b in self._open.items() if now - b.started >= self.linger]
        return [self._open.pop(k) for k in keys]

    def next_deadline(self) -> float | None:
        """Clock time when the oldest open batch is due, or None when nothing is open."""
        if not self._open:
            return None
        return min(b.started for b in self._open.values()) + self.linger

    def drain(self) -> list[Batch]:
        """Every open batch, oldest first (end of a closed slice)."""
        batches = sorted(self._open.values(), key=lambda b: b.started)
        self._open.clear()
        return batches

    def __len__(self) -> int:
        return sum(len(b) for b in self._open.values())
