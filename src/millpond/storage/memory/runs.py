"""Delivery runs and dead letters in dicts (thread-safe, not durable).

A checkpoint is built on copies and swapped in at the end, under the lock, so a failure
anywhere in it leaves the store as it was, as a database transaction would.
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

from millpond.errors import BadRequest, NotFound
from millpond.storage import outcome_rows
from millpond.storage.models import (
    CountKey,
    DeadLetter,
    DeadLetterState,
    OutcomePage,
    Run,
    RunKind,
    RunState,
    WindowCursor,
)

FINISHED = (RunState.COMPLETED, RunState.CANCELLED, RunState.FAILED)


def _stored(value: Any) -> Any:
    """``value`` as a database would give it back: JSON in, JSON out (and refused if it
    is no JSON)."""
    return None if value is None else json.loads(json.dumps(value))


class MemoryRunStore:
    """:class:`~millpond.storage.contracts.RunStore` in dicts."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._runs: dict[str, Run] = {}
        self._dead: dict[int, DeadLetter] = {}
        self._ids = itertools.count(1)
        #: (run id, key) -> [(row id, packed seqs)], oldest first.
        self._outcomes: dict[tuple[str, CountKey], list[outcome_rows.Row]] = {}
        self._row_ids = itertools.count(1)
        #: (row id, written at, its list in ``_outcomes``), oldest first: for pruning.
        self._written: deque[tuple[int, float, list[outcome_rows.Row]]] = deque()

    # -- runs ------------------------------------------------------------------------------
    def create(self, run: Run) -> Run:
        now = time.time()
        run.created_at = run.created_at or now
        run.updated_at = run.updated_at or run.created_at
        stored = copy.deepcopy(run)
        stored.spec = _stored(run.spec)
        stored.report = _stored(run.report)
        stored.counts = {k: n for k, n in run.counts.items() if n}
        with self._lock:
            if run.id in self._runs:
                raise BadRequest(f"a run with id {run.id!r} already exists", field="id")
            self._runs[run.id] = stored
        return run

    def _get(self, run_id: str) -> Run:
        run = self._runs.get(run_id)
        if run is None:
            raise NotFound(f"no run {run_id!r}", field="id")
        return run

    def get(self, run_id: str) -> Run:
        with self._lock:
            return copy.deepcopy(self._get(run_id))

    def list(self, destination_id: str | None = None, *, kinds: Iterable[RunKind] = (),
             states: Iterable[RunState] = ()) -> list[Run]:
        kinds, states = set(kinds), set(states)
        with self._lock:
            runs = [r for r in self._runs.values()
                    if (destination_id is None or r.destination_id == destination_id)
                    and (not kinds or r.kind in kinds) and (not states or r.state in states)]
            return copy.deepcopy(sorted(runs, key=lambda r: r.created_at))

    def set_state(self, run_id: str, state: RunState, *, error: str | None = None,
                  report: Mapping[str, Any] | None = None) -> Run:
        now = time.time()
        stored_report: dict[str, Any] | None = _stored(report)
        with self._lock:
            run = self._get(run_id)
            run.state = state
            run.error = error if error is not None else run.error
            run.report = stored_report if stored_report is not None else run.report
            run.updated_at = now
            if state in FINISHED:
                run.finished_at = now
            return copy.deepcopy(run)

    def checkpoint(self, run_id: str, *, cursor: int | WindowCursor | None = None,
                   counts: Mapping[CountKey, int] | None = None,
                   dead: Sequence[DeadLetter] = (), scanned: int = 0,
                   redriven: Sequence[int] = (), durable: bool = True,
                   outcomes: Mapping[CountKey, Sequence[int]] | None = None) -> None:
        now = time.time()
        packed: list[tuple[CountKey, bytes]] = [
            ((k[0], k[1], k[2]), blob) for k, blob in outcome_rows.pack_all(outcomes)]
        with self._lock:
            run = copy.deepcopy(self._get(run_id))
            run.updated_at = now
            run.scanned += scanned
            if cursor is not None:
                run.cursor = cursor
            for key, n in (counts or {}).items():
                if n:
                    run.counts[key] = run.counts.get(key, 0) + n
            letters = [self._new_dead_letter(d, now) for d in dead]
            marked: list[DeadLetter] = []
            for i in redriven:
                letter = self._dead.get(i)
                if letter is not None:
                    marked.append(msgspec.structs.replace(letter, state=DeadLetterState.REDRIVEN,
                                               redriven_at=now))
            # everything is built: apply it
            self._runs[run_id] = run
            for letter in (*letters, *marked):
                self._dead[letter.id] = letter
            for key, blob in packed:
                rows = self._outcomes.setdefault((run_id, key), [])
                row_id = next(self._row_ids)
                rows.append((row_id, blob))
                self._written.append((row_id, now, rows))

    def prune_outcomes(self, before: float, limit: int = 10_000) -> int:
        pruned = 0
        with self._lock:
            written = self._written
            while written and pruned < limit and written[0][1] <= before:
                row_id, _, rows = written.popleft()
                if rows and rows[0][0] == row_id:  # rows of one key are in write order
                    del rows[0]
                pruned += 1
        return pruned

    def outcome_events(self, run_ids: Sequence[str], keys: Sequence[CountKey], *,
                       cursor: str | None = None, limit: int = 50) -> OutcomePage:
        at = outcome_rows.parse_cursor(cursor)
        with self._lock:
            lists: list[list[outcome_rows.Row]] = [
                list(self._outcomes.get((r, (k[0], k[1], k[2])), ()))
                for r in dict.fromkeys(run_ids) for k in dict.fromkeys(keys)]
        top = at[0] if at is not None else None
        streams = [iter([row for row in reversed(rows) if top is None or row[0] <= top])
                   for rows in lists]
        return outcome_rows.page(streams, at, limit)

    def _new_dead_letter(self, d: DeadLetter, now: float) -> DeadLetter:
        if not isinstance(d.action, str) or not isinstance(d.reason, str):  # pyright: ignore[reportUnnecessaryIsInstance] - SQLite's NOT NULL, for callers no checker sees
            raise TypeError("a dead letter needs its action and reason")
        return DeadLetter(d.destination_id, d.run_id, d.seq, d.message_id, d.action, d.reason,
                          d.status, d.response, _stored(d.payload), d.created_at or now,
                          DeadLetterState.DEAD, None, next(self._ids))

    # -- dead letters ----------------------------------------------------------------------
    def dead_letters(self, destination_id: str, *,
                     state: DeadLetterState | None = DeadLetterState.DEAD,
                     after_id: int = 0, limit: int = 100) -> list[DeadLetter]:
        with self._lock:
            found = [d for i, d in sorted(self._dead.items())
                     if i > after_id and d.destination_id == destination_id
                     and (state is None or d.state == state)]
            return copy.deepcopy(found[:limit])

    def dead_letter(self, dead_letter_id: int) -> DeadLetter:
        with self._lock:
            found = self._dead.get(dead_letter_id)
            if found is None:
                raise NotFound(f"no dead letter {dead_letter_id}", field="id")
            return copy.deepcopy(found)

    def count_dead_letters(self, destination_id: str,
                           state: DeadLetterState = DeadLetterState.DEAD) -> int:
        with self._lock:
            return sum(1 for d in self._dead.values()
                       if d.destination_id == destination_id and d.state == state)

    def claim_dead_letters(self, destination_id: str,
                           ids: Sequence[int] | None) -> list[DeadLetter]:
        with self._lock:
            if ids is None:
                rows = [d for d in self._dead.values()
                        if d.destination_id == destination_id
                        and d.state == DeadLetterState.DEAD]
            else:
                bad = [i for i in ids if i not in self._dead
                       or self._dead[i].destination_id != destination_id]
                if bad:
                    raise NotFound(f"no dead letter {', '.join(map(str, bad))} for this "
                                   "destination", field="ids")
                busy = [i for i in ids if self._dead[i].state != DeadLetterState.DEAD]
                if busy:
                    raise BadRequest(f"dead letter {', '.join(map(str, busy))} is not in "
                                     "state dead (already redriven or being redriven)",
                                     field="ids")
                rows = [self._dead[i] for i in dict.fromkeys(ids)]
            rows.sort(key=lambda d: (d.seq, d.id))
            for d in rows:
                d.state = DeadLetterState.REDRIVING
            return copy.deepcopy(rows)

    def release_dead_letters(self, ids: Sequence[int]) -> None:
        with self._lock:
            for i in ids:
                d = self._dead.get(i)
                if d is not None and d.state == DeadLetterState.REDRIVING:
                    d.state = DeadLetterState.DEAD

    def forget_dead_letters(self, seqs: Iterable[int], ids: Sequence[str]) -> int:
        """Remove the dead letters of ``seqs``, and those whose payload names any of
        ``ids``; how many."""
        wanted = set(seqs)
        with self._lock:
            gone = [k for k, d in self._dead.items()
                    if d.seq in wanted or any(i in json.dumps(d.payload) for i in ids)]
            for k in gone:
                del self._dead[k]
            return len(gone)

    def recover_dead_letters(self) -> int:
        with self._lock:
            n = 0
            for d in self._dead.values():
                if d.state == DeadLetterState.REDRIVING:
                    d.state = DeadLetterState.DEAD
                    n += 1
            return n
