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
keys, for the events behind each count: ``RunStore.outcome_events``), in the same step;
a replay's keys are positions, which the checkpoint writer turns into the events' seqs
(``Slice.event_seqs``), off the event loop.

Why releasing works on runs, not events: a pump releases a whole batch at a time, mostly
with one outcome, so the released keys are taken off the head first and then every
per-key step runs in C (``map``, ``groupby``, ``list.extend``); a run of identical
outcomes costs one counter update and one ``extend`` of its list, whatever its length.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from itertools import groupby, repeat
from typing import Any

from millpond.delivery.outcomes import RECEIVED, CountKey
from millpond.storage.models import DeadLetter

#: What an unreleased event has ended with so far: one counter key, or several.
Held = CountKey | list[CountKey]
#: Up to this many events, a batch finished or a release takes the plain loop (one step
#: per event): below it the fixed cost of the C way (``done_all``, ``_release``) is more.
SMALL = 4


class Ledger:
    """Open events in seq order; see the module docstring. Single-threaded (one loop).

    Why plain dicts keyed by seq rather than an object per event: a fast pump opens tens
    of thousands of events a second and holds thousands, and objects held that long are
    what the cyclic GC keeps walking. Ints and strings are no GC objects at all, and the
    events of a batch sent share one outcome tuple.
    """

    def __init__(self, cursor: int, *, keep_finished: bool = False):
        self.cursor = cursor
        self._order: list[int] = []  # unreleased events, in read order
        self._received: list[Any] = []  # their received times (lag stats), aligned
        self._pending: dict[int, int] = {}  # items still in flight, per unfinished event
        self._held: dict[int, Held] = {}  # outcomes of unreleased events
        self._held_dead: dict[int, list[DeadLetter]] = {}  # dead letters of unreleased events
        self._counts: Counter[CountKey] = Counter()
        self._dead: list[DeadLetter] = []
        self._keep_finished = keep_finished
        self._finished: list[int] = []
        #: Released events by outcome key (their keys, in release order), until taken.
        self._outcomes: dict[CountKey, list[int]] = {}
        self.read_upto = cursor
        self._taken = cursor

    def open(self, seq: int, pending: int, received: Any = None,
             counts: list[CountKey] | None = None, dead: list[DeadLetter] | None = None
             ) -> None:
        """Register an event read from the slice (increasing key ``seq``: its log seq, or
        a replay's position) with ``pending`` items in flight and the outcomes it already
        has (skips, dead letters from mapping)."""
        self.read_upto = seq
        if pending == 0 and not self._order:
            self._commit(seq, counts, dead)
            return
        self._order.append(seq)
        self._received.append(received)
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
        (the common case, in one call rather than one per item).

        Why two ways: a batch of ``SMALL`` events or fewer (a webhook of batch size 1)
        takes the plain loop, whose fixed cost is lowest; a larger one checks first that
        every event of it has no outcome yet and that this was its last item (mostly),
        and then both steps run in C."""
        pending, held = self._pending, self._held
        seqs = seqs if isinstance(seqs, list) else list(seqs)
        if len(seqs) <= SMALL:
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
            return
        lefts = list(map(pending.__getitem__, seqs))  # KeyError: reported twice (a bug)
        if lefts.count(1) == len(lefts):
            deque(map(pending.pop, seqs), 0)
        else:
            for seq in seqs:
                left = pending[seq] - 1
                if left:
                    pending[seq] = left
                else:
                    del pending[seq]
        if not held:
            self._held = dict.fromkeys(seqs, count)
        elif held.keys().isdisjoint(seqs):
            held.update(dict.fromkeys(seqs, count))
        else:
            for seq in seqs:
                if seq in held:
                    self._hold(seq, count)
                else:
                    held[seq] = count
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
        """Commit finished events from the head, up to the first unfinished one: cut
        their keys off the head, then settle them run by run (module docstring).

        Why ``order`` is a list: the first unfinished key is found by ``filter`` and
        ``index`` and the finished ones cut off with one ``del``, all in C. ``groupby``
        compares outcomes by equality (identity first, in C): the events of a sent batch
        share one outcome tuple, and equal tuples count under one key anyway. Events
        with several outcomes (a list) are listed one by one."""
        order, pending = self._order, self._pending
        if not order or order[0] in pending:
            return
        n, size = 1, len(order)  # finished events at the head: a few by hand, then in C
        while n < size and order[n] not in pending:
            n += 1
            if n > SMALL:
                head = next(filter(pending.__contains__, order), None)
                n = size if head is None else order.index(head)
                break
        keys = order[:n]
        del self._received[:n]  # first: oldest_open may pair a head with the next's time
        del order[:n]
        held, counts, outcomes = self._held, self._counts, self._outcomes
        read = outcomes.get(RECEIVED)
        if read is None:
            outcomes[RECEIVED] = keys.copy()
        else:
            read.extend(keys)
        if n <= SMALL:  # a few events: one step each costs less than the runs' set-up
            held_dead = self._held_dead
            for seq in keys:
                outcome = held.pop(seq, None)
                if outcome is not None:
                    for key in outcome if isinstance(outcome, list) else (outcome,):
                        counts[key] += 1
                        listed = outcomes.get(key)
                        if listed is None:
                            outcomes[key] = [seq]
                        else:
                            listed.append(seq)
                if held_dead:
                    dead = held_dead.pop(seq, None)
                    if dead:
                        self._dead.extend(dead)
            if self._keep_finished:
                self._finished.extend(keys)
            self.cursor = keys[-1]
            return
        settled = 0  # released events that had outcomes held
        for outcome, run in groupby(keys, held.get):
            if outcome is None:
                continue
            if isinstance(outcome, list):
                for seq in run:  # equal lists: the same keys
                    settled += 1
                    for key in outcome:
                        counts[key] += 1
                        outcomes.setdefault(key, []).append(seq)
                continue
            listed = outcomes.get(outcome)
            if listed is None:
                listed = outcomes[outcome] = list(run)
                added = len(listed)
            else:
                before = len(listed)
                listed.extend(run)
                added = len(listed) - before
            counts[outcome] += added
            settled += added
        if settled == len(held):  # all of them (mostly): no lookup per key
            held.clear()
        elif settled:
            deque(map(held.pop, keys, repeat(None)), 0)
        held_dead = self._held_dead
        if held_dead:
            for dead in map(held_dead.pop, keys, repeat(None)):
                if dead:
                    self._dead.extend(dead)
        if self._keep_finished:
            self._finished.extend(keys)
        self.cursor = keys[-1]

    def count(self, key: CountKey, n: int = 1) -> None:
        """Count something that is not an event outcome (retries): released at once."""
        self._counts[key] += n

    def _commit(self, seq: int, counts: list[CountKey] | None,
                dead: list[DeadLetter] | None) -> None:
        """Release an event at once (nothing is open before it)."""
        self.cursor = seq
        outcomes = self._outcomes
        outcomes.setdefault(RECEIVED, []).append(seq)
        if counts:
            for key in counts:
                self._counts[key] += 1
                outcomes.setdefault(key, []).append(seq)
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
        """The released events by outcome key (their keys in release order, ``RECEIVED``
        for all of them), to persist with :meth:`take`'s state; the ledger forgets them."""
        outcomes, self._outcomes = self._outcomes, {}
        return outcomes

    def give_back_outcomes(self, outcomes: dict[CountKey, list[int]]) -> None:
        """Undo :meth:`take_outcomes` after a failed write."""
        for key, seqs in outcomes.items():
            self._outcomes[key] = [*seqs, *self._outcomes.get(key, ())]

    def oldest_open(self) -> tuple[int, Any] | None:
        """``(seq, received)`` of the lowest unfinished event, or None. Safe to call from
        another thread (stats): it never iterates; while a release cuts the head, it may
        pair the old head with the received time of an event after it (a moment's lag
        read a little short), never fail."""
        try:
            head = self._order[0]
            return head, self._received[0]
        except IndexError:
            return None

    @property
    def unfinished(self) -> int:
        """Events read but not yet released (in flight, batched, or behind one that is)."""
        return len(self._order)

    @property
    def dirty(self) -> bool:
        """Whether :meth:`take` would return anything new."""
        return self.cursor != self._taken or bool(self._counts or self._dead or self._finished)
