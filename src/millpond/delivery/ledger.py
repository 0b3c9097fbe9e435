"""Which events of a slice have finished, and the cursor that may be saved for them.

Why a ledger instead of "the last seq read": the pump reads ahead while a batch is in
flight and a lingering group may hold an older event than a full batch just sent. An
event is *finished* when every one of its items ended as sent, skipped or dead-lettered;
the saved cursor is the seq just below the lowest unfinished event, so a crash replays
only unfinished work (duplicates: at most the request that was in flight).

Outcomes (counter increments, dead-letter rows) are held with their event and released
only when the cursor passes it. That keeps the persisted counters and dead letters
exactly in step with the persisted cursor: after a crash, an event replayed from the log
is counted once, not twice. Released events are also listed by outcome key (their
seqs, for the events behind each count: ``RunStore.outcome_events``), in the same step.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from typing import Any

from millpond.delivery.outcomes import RECEIVED, CountKey
from millpond.storage.models import DeadLetter

#: What an unreleased event has ended with so far: one counter key, or several.
Held = CountKey | list[CountKey]


class Ledger:
    """Open events in seq order; see the module docstring. Single-threaded (one loop).

    Why plain dicts keyed by seq rather than an object per event: a fast pump opens tens
    of thousands of events a second and holds thousands, and objects held that long are
    what the cyclic GC keeps walking. Ints and strings are no GC objects at all, and the
    events of a batch sent share one outcome tuple.
    """

    def __init__(self, cursor: int, *, keep_finished: bool = False):
        self.cursor = cursor
        self._order: deque[int] = deque()  # unreleased events, in read order
        self._pending: dict[int, int] = {}  # items still in flight, per unfinished event
        self._received: dict[int, Any] = {}  # per unreleased event, for lag stats
        self._held: dict[int, Held] = {}  # outcomes of unreleased events
        self._held_dead: dict[int, list[DeadLetter]] = {}  # dead letters of unreleased events
        self._counts: Counter[CountKey] = Counter()
        self._dead: list[DeadLetter] = []
        self._keep_finished = keep_finished
        self._finished: list[int] = []
        #: The event seq of an unreleased key, where they differ (a replay's positions).
        self._seq: dict[int, int] = {}
        #: Released events by outcome key (their seqs, in release order), until taken.
        self._outcomes: dict[CountKey, list[int]] = {}
        self.read_upto = cursor
        self._taken = cursor

    def open(self, seq: int, pending: int, received: Any = None,
             counts: list[CountKey] | None = None, dead: list[DeadLetter] | None = None,
             event_seq: int | None = None) -> None:
        """Register an event read from the slice (increasing key ``seq``) with ``pending``
        items in flight and the outcomes it already has (skips, dead letters from mapping).
        ``event_seq``: the event's seq in the log, when the key is not it (a replay's
        position)."""
        self.read_upto = seq
        if pending == 0 and not self._order:
            self._commit(seq if event_seq is None else event_seq, seq, counts, dead)
            return
        if event_seq is not None and event_seq != seq:
            self._seq[seq] = event_seq
        self._order.append(seq)
        self._received[seq] = received
        if pending:
            self._pending[seq] = pending
        if counts:
            self._held[seq] = counts
        if dead:
            self._held_dead[seq] = dead

    def done(self, seq: int, count: CountKey | None = None, dead: DeadLetter | None = None) -> None:
        """One item of event ``seq`` finished with outcome ``count`` (and its dead letter)."""
        left = self._pending[seq] - 1
        if count is not None:
            self._hold(seq, count)
        if dead is not None:
            self._held_dead[seq] = [*self._held_dead.get(seq, ()), dead]
        if left:
            self._pending[seq] = left
            return
        del self._pending[seq]
        self._release()

    def done_all(self, seqs: Iterable[int], count: CountKey) -> None:
        """One item of each event in ``seqs`` finished with outcome ``count``: a batch sent
        (the common case, in one call rather than one per item)."""
        pending, held = self._pending, self._held
        for seq in seqs:
            left = pending[seq] - 1
            if seq in held:
                self._hold(seq, count)
            else:
                held[seq] = count
            if left:
                pending[seq] = left
            else:
                del pending[seq]
        self._release()

    def _hold(self, seq: int, count: CountKey) -> None:
        old = self._held.get(seq)
        if old is None:
            self._held[seq] = count
        elif isinstance(old, list):
            self._held[seq] = [*old, count]  # a new list: ``open`` got the caller's
        else:
            self._held[seq] = [old, count]

    def _release(self) -> None:
        """Commit finished events from the head, up to the first unfinished one.

        A sent batch shares one outcome tuple among its events, so a run of events with
        that same outcome is counted with one Counter update (by identity)."""
        order, pending, held, held_dead = self._order, self._pending, self._held, self._held_dead
        received, counts = self._received, self._counts
        seq_of, outcomes = self._seq, self._outcomes
        read = outcomes.get(RECEIVED)
        if read is None:
            read = outcomes[RECEIVED] = []
        run: CountKey | None = None  # the outcome shared by the last ``n`` events
        listed: list[int] = read  # the seqs of ``run``'s events
        n = 0
        while order and order[0] not in pending:
            seq = order.popleft()
            del received[seq]
            event_seq = seq_of.pop(seq, seq) if seq_of else seq
            read.append(event_seq)
            outcome = held.pop(seq, None)
            if outcome is not run:
                if n and run is not None:
                    counts[run] += n
                n = 0
                if isinstance(outcome, list):
                    for key in outcome:
                        counts[key] += 1
                        outcomes.setdefault(key, []).append(event_seq)
                    run = None
                else:
                    run = outcome
                    if outcome is not None:
                        listed = outcomes.setdefault(outcome, [])
            if run is not None:
                n += 1
                listed.append(event_seq)
            if held_dead:
                dead = held_dead.pop(seq, None)
                if dead:
                    self._dead.extend(dead)
            if self._keep_finished:
                self._finished.append(seq)
            self.cursor = seq
        if n and run is not None:
            counts[run] += n

    def count(self, key: CountKey, n: int = 1) -> None:
        """Count something that is not an event outcome (retries): released at once."""
        self._counts[key] += n

    def _commit(self, event_seq: int, seq: int, counts: list[CountKey] | None,
                dead: list[DeadLetter] | None) -> None:
        """Release an event at once (nothing is open before it)."""
        self.cursor = seq
        outcomes = self._outcomes
        outcomes.setdefault(RECEIVED, []).append(event_seq)
        if counts:
            for key in counts:
                self._counts[key] += 1
                outcomes.setdefault(key, []).append(event_seq)
        if dead:
            self._dead.extend(dead)
        if self._keep_finished:
            self._finished.append(seq)

    def take(self) -> tuple[int, Counter[CountKey], list[DeadLetter], list[int]]:
        """Released state to persist in one transaction: cursor, counts, dead letters and
        (with ``keep_finished``) the finished seqs; the ledger forgets them."""
        counts, dead, finished = self._counts, self._dead, self._finished
        self._counts, self._dead, self._finished = Counter(), [], []
        self._taken = self.cursor
        return self.cursor, counts, dead, finished

    def give_back(self, cursor: int, counts: Counter[CountKey], dead: list[DeadLetter],
                  finished: list[int]) -> None:
        """Undo :meth:`take` after a failed write, so nothing is lost."""
        self._taken = min(self._taken, cursor - 1)
        self._counts.update(counts)
        self._dead[:0] = dead
        self._finished[:0] = finished

    def take_outcomes(self) -> dict[CountKey, list[int]]:
        """The released events by outcome key (seqs, ``RECEIVED`` for all of them), to
        persist with :meth:`take`'s state; the ledger forgets them."""
        outcomes, self._outcomes = self._outcomes, {}
        return outcomes

    def give_back_outcomes(self, outcomes: dict[CountKey, list[int]]) -> None:
        """Undo :meth:`take_outcomes` after a failed write."""
        for key, seqs in outcomes.items():
            self._outcomes[key] = [*seqs, *self._outcomes.get(key, ())]

    def oldest_open(self) -> tuple[int, Any] | None:
        """``(seq, received)`` of the lowest unfinished event, or None. Safe to call from
        another thread (stats): it never iterates, and a head released meanwhile reads
        as received None."""
        try:
            head = self._order[0]
        except IndexError:
            return None
        return head, self._received.get(head)

    @property
    def unfinished(self) -> int:
        """Events read but not yet released (in flight, batched, or behind one that is)."""
        return len(self._order)

    @property
    def dirty(self) -> bool:
        """Whether :meth:`take` would return anything new."""
        return self.cursor != self._taken or bool(self._counts or self._dead or self._finished)
