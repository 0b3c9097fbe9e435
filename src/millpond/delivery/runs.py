"""The delivery-run life cycle: which state moves are allowed, and how a run is supervised.

Why one table: live delivery, replays and redrives are all runs (one ``Run`` record, one
store); pausing, resuming, cancelling, completing and failing each check the same table,
so an illegal move (resume a completed replay, pause a cancelled one) is refused with
the same clear message everywhere (a 409 through the API) instead of each caller
re-deriving it from ad hoc ``if`` chains.

Why a restart policy per kind: a live run must never stop delivering silently, so it is
restarted from its last checkpoint after a pause; a replay that fails is left ``failed``
for its owner to resume (it may be failing on its own data); a redrive that fails puts
its dead letters back (they can be redriven again). :func:`supervise` is the one loop
that applies the policy.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from millpond.delivery.outcomes import CountKey, Outcome, category, stamp
from millpond.delivery.slices import Slice
from millpond.errors import Conflict
from millpond.storage.contracts import RunStore
from millpond.storage.models import DeadLetter, Run, RunKind, RunState

log = logging.getLogger("millpond.delivery")

P, R, Z, C, X, F = (RunState.PLANNED, RunState.RUNNING, RunState.PAUSED, RunState.COMPLETED,
                    RunState.CANCELLED, RunState.FAILED)

#: Allowed moves from each state. Completed and cancelled are final; a failed run can be
#: resumed (a replay whose vendor answered nonsense for a while) but not cancelled again.
TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    P: frozenset({R, X}),
    R: frozenset({Z, C, X, F}),
    Z: frozenset({R, X}),
    F: frozenset({R}),
    C: frozenset(),
    X: frozenset(),
}

#: States in which a run is not finished (it owns its slot, it may still send).
ACTIVE: frozenset[RunState] = frozenset({P, R, Z})

_VERB = {R: "resumed", Z: "paused", C: "completed", X: "cancelled", F: "failed"}


def allowed(current: RunState, to: RunState) -> bool:
    return to in TRANSITIONS[current]


def check(run: Run, to: RunState, *, name: str | None = None) -> None:
    """Raise :class:`Conflict` (field ``state``) naming the states ``to`` may be reached
    from, unless ``run`` may move to ``to``."""
    if allowed(run.state, to):
        return
    what = name or f"{run.kind} run"
    if not TRANSITIONS[run.state]:
        raise Conflict(f"{what} {run.id} is already {run.state}", field="state")
    sources = [str(s) for s, moves in TRANSITIONS.items() if to in moves and s != P]
    only = " or ".join(sources)
    raise Conflict(f"{what} {run.id} is {run.state}; only a {only} {what.split()[0]} can "
                   f"be {_VERB.get(to, str(to))}", field="state")


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """What happens when a run's pump raises: restart after ``pause`` seconds (forever),
    or stop and let the caller mark the run."""

    restart: bool
    pause: float = 5.0


POLICIES: dict[RunKind, RestartPolicy] = {
    RunKind.LIVE: RestartPolicy(restart=True, pause=5.0),
    RunKind.REPLAY: RestartPolicy(restart=False),
    RunKind.REDRIVE: RestartPolicy(restart=False),
}


async def supervise(kind: RunKind, attempt: Callable[[], Awaitable[None]], *,
                    on_error: Callable[[str], None], label: str,
                    policy: RestartPolicy | None = None) -> str | None:
    """Run ``attempt`` under ``kind``'s restart policy. Returns None when an attempt
    finished, or the error (``Type: message``) that ended a run that is not restarted.
    ``on_error`` sees every failure (stats show it while a live run restarts)."""
    policy = policy or POLICIES[kind]
    while True:
        try:
            await attempt()
            return None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - keep delivering; show the failure
            error = f"{type(exc).__name__}: {exc}"
            on_error(error)
            if not policy.restart:
                return error
            log.exception("%s failed; restarting in %ss", label, policy.pause)
            await asyncio.sleep(policy.pause)


class Checkpoint:
    """The one checkpoint path of every run: what a pump's ledger released, written with
    :meth:`RunStore.checkpoint` in one transaction.

    The slice turns the ledger key into the run's cursor (live: the seq; replay: the
    (ts, seq) of a window position; redrive: none). ``redriven`` maps a key to the dead
    letters its event settles (a redrive marks them as their events finish). Why a
    settled dead letter is also counted ``redriven`` in this run (for the letters of
    ``recount`` runs, whose counters the destination's totals add up): the event's final
    outcome is what the redrive counts now, so stats subtract ``redriven`` from
    ``dead_lettered`` and count each event once, while every stored counter only grows
    (``/metrics`` exports them as Prometheus counters, which must never decrease).
    ``scanned``: count keys as events read past (a replay's progress). ``durable=False``
    for progress cheaper to redo than to fsync (a replay's; see the store's contract).
    """

    def __init__(self, runs: RunStore, run: Run, slice_: Slice, *, start: int,
                 redriven: Mapping[int, Sequence[DeadLetter]] | None = None,
                 recount: frozenset[str] = frozenset(),
                 scanned: bool = False, durable: bool = True):
        self.runs = runs
        self.run = run
        self.slice = slice_
        self._saved = start
        self._redriven = redriven
        self._recount = recount
        self._scanned = scanned
        self._durable = durable
        #: Keys whose event finished (kept for a redrive's ``redriven``).
        self.finished: set[int] = set()

    def _event_seqs(self, outcomes: dict[CountKey, list[int]]) -> dict[CountKey, list[int]]:
        """``outcomes`` with the slice's keys turned into event seqs. Equal key lists (the
        ``received`` list and the one outcome every event of a batch ended with: a
        replay's checkpoint, mostly) share one converted list, which the store then
        packs once (``outcome_rows.pack_all``): comparing two lists costs less than
        converting one."""
        event_seqs = self.slice.event_seqs
        converted: list[tuple[list[int], list[int]]] = []
        out: dict[CountKey, list[int]] = {}
        for k, keys in outcomes.items():
            if not keys:
                continue
            seqs = next((s for ks, s in converted if len(ks) == len(keys) and ks == keys),
                        None)
            if seqs is None:
                seqs = event_seqs(keys)
                converted.append((keys, seqs))
            out[k] = seqs
        return out

    def __call__(self, key: int, counts: Counter[CountKey], dead: list[DeadLetter],
                 finished: list[int], outcomes: dict[CountKey, list[int]] | None = None
                 ) -> None:
        run = self.run
        moved = key > self._saved
        cursor = self.slice.cursor_at(key) if moved else None
        settled = [d for k in finished for d in self._redriven.get(k, ())] \
            if self._redriven is not None else []
        redriven: Counter[CountKey] = Counter((d.action, Outcome.REDRIVEN, category(d))
                                              for d in settled if d.run_id in self._recount)
        ids = [d.id for d in settled]
        both = counts + redriven if redriven else counts
        if outcomes:  # keys -> seqs here, on the writer's thread (slices.py)
            outcomes = self._event_seqs(outcomes)
        self.runs.checkpoint(run.id, cursor=cursor, counts=both,
                             dead=stamp(dead, run.destination_id, run.id),
                             scanned=key - self._saved if moved and self._scanned else 0,
                             redriven=ids, durable=self._durable, outcomes=outcomes)
        if moved:
            self.slice.saved(key)
        self._saved = max(self._saved, key)
        self.finished.update(finished)
        if redriven:  # saved: now what the pump reports as saved says so too
            counts.update(redriven)
