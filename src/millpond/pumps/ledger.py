"""Which events of a slice have finished, and the cursor that may be saved for them.

Why a ledger instead of "the last seq read": the pump reads ahead while a batch is in
flight and a lingering group may hold an older event than a full batch just sent. An
event is *finished* when every one of its items ended as sent, skipped or dead-lettered;
the saved cursor is the seq just below the lowest unfinished event, so a crash replays
only unfinished work (duplicates: at most the request that was in flight).

Outcomes (counter increments, dead-letter rows) are held with their event and released
only when the cursor passes it. That keeps the persisted counters and dead letters
exactly in step with the persisted cursor: after a crash, an event replayed from the log
is counted once, not twice.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

#: A counter key: (action, outcome, reason); action "" for event-level skips.
CountKey = tuple[str, str, str]


class _Entry:
    __slots__ = ("seq", "pending", "received", "counts", "dead")

    def __init__(self, seq: int, pending: int, received: Any):
        self.seq = seq
        self.pending = pending
        self.received = received
        self.counts: list[CountKey] | None = None
        self.dead: list[dict] | None = None


class Ledger:
    """Open events in seq order; see the module docstring. Single-threaded (one loop)."""

    def __init__(self, cursor: int, *, keep_finished: bool = False):
        self.cursor = cursor
        self._entries: deque[_Entry] = deque()
        self._waiting: dict[int, _Entry] = {}
        self._counts: Counter[CountKey] = Counter()
        self._dead: list[dict] = []
        self._keep_finished = keep_finished
        self._finished: list[int] = []
        self.read_upto = cursor
        self._taken = cursor

    def open(self, seq: int, pending: int, received: Any = None,
             counts: list[CountKey] | None = None, dead: list[dict] | None = None) -> None:
        """Register an event read from the slice (increasing ``seq``) with ``pending`` items
        in flight and the outcomes it already has (skips, dead letters from mapping)."""
        self.read_upto = seq
        if pending == 0 and not self._entries:
            self._commit(seq, counts, dead)
            return
        entry = _Entry(seq, pending, received)
        entry.counts = counts
        entry.dead = dead
        self._entries.append(entry)
        if pending:
            self._waiting[seq] = entry

    def done(self, seq: int, count: CountKey | None = None, dead: dict | None = None) -> None:
        """One item of event ``seq`` finished with outcome ``count`` (and its dead letter)."""
        entry = self._waiting[seq]
        if count is not None:
            entry.counts = [*(entry.counts or ()), count]
        if dead is not None:
            entry.dead = [*(entry.dead or ()), dead]
        entry.pending -= 1
        if entry.pending:
            return
        del self._waiting[seq]
        entries = self._entries
        while entries and entries[0].pending == 0:
            head = entries.popleft()
            self._commit(head.seq, head.counts, head.dead)

    def count(self, key: CountKey, n: int = 1) -> None:
        """Count something that is not an event outcome (retries): released at once."""
        self._counts[key] += n

    def _commit(self, seq: int, counts: list[CountKey] | None, dead: list[dict] | None) -> None:
        self.cursor = seq
        if counts:
            for key in counts:
                self._counts[key] += 1
        if dead:
            self._dead.extend(dead)
        if self._keep_finished:
            self._finished.append(seq)

    def take(self) -> tuple[int, Counter[CountKey], list[dict], list[int]]:
        """Released state to persist in one transaction: cursor, counts, dead letters and
        (with ``keep_finished``) the finished seqs; the ledger forgets them."""
        counts, dead, finished = self._counts, self._dead, self._finished
        self._counts, self._dead, self._finished = Counter(), [], []
        self._taken = self.cursor
        return self.cursor, counts, dead, finished

    def give_back(self, cursor: int, counts: Counter[CountKey], dead: list[dict],
                  finished: list[int]) -> None:
        """Undo :meth:`take` after a failed write, so nothing is lost."""
        self._taken = min(self._taken, cursor - 1)
        self._counts.update(counts)
        self._dead[:0] = dead
        self._finished[:0] = finished

    def oldest_open(self) -> tuple[int, Any] | None:
        """``(seq, received)`` of the lowest unfinished event, or None. Safe to call from
        another thread (stats): it never iterates, and a head popped meanwhile is None."""
        try:
            head = self._entries[0]
        except IndexError:
            return None
        return head.seq, head.received

    @property
    def unfinished(self) -> int:
        """Events read but not yet released (in flight, batched, or behind one that is)."""
        return len(self._entries)

    @property
    def dirty(self) -> bool:
        """Whether :meth:`take` would return anything new."""
        return self.cursor != self._taken or bool(self._counts or self._dead or self._finished)
