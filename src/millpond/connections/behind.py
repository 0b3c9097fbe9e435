"""The events behind a delivery count: every number of a destination's funnel, listed.

Why from the runs' recorded outcomes (``RunStore.outcome_events``) and not by evaluating
the log again: the actions may have changed since, and a filter over the whole log costs
a scan per page. A checkpoint records which events ended how together with the counters
it adds, so the list behind a count is exactly the events that count counted.

The funnel steps and the outcome keys they stand for, per action (live = the live run
and the destination's redrives, whose counters its totals add up; or one replay):

- ``received``: every event the run read (the action does not matter);
- ``matched``: the action's sent, skipped and dead-lettered events (its trigger matched;
  an event no action matched is skipped with action ``""``);
- ``mapped``: matched, less what the age window skipped and the mapping could not map;
- ``sent``; ``skipped`` (one reason, or all); ``dead_lettered`` (one category, or all:
  events dead-lettered then redriven stay listed here, and appear under the redrive's
  outcome too).

The rows are kept ``delivery.outcome_retention_days`` (:mod:`millpond.retention.outcomes`):
the counts stay exact, but a count of a run older than that includes events no longer
listed, and the answer says so (``older_unlisted``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from millpond.connections.lookup import event_at
from millpond.delivery.evaluate import TOO_OLD
from millpond.delivery.outcomes import RECEIVED, CountKey, Outcome
from millpond.errors import BadRequest, NotFound
from millpond.storage.contracts import EventLog, RunStore
from millpond.storage.models import Destination, Run, RunKind

STEPS = ("received", "matched", "mapped", "sent", "skipped", "dead_lettered")
_ENDINGS = (Outcome.SENT, Outcome.SKIPPED, Outcome.DEAD_LETTERED)


def runs_of(runs: RunStore, dest: Destination, run: str) -> list[Run]:
    """``live``: the live run and the redrives; else the destination's replay ``run``."""
    if run == "live":
        return runs.list(dest.id, kinds=[RunKind.LIVE, RunKind.REDRIVE])
    try:
        found = runs.get(run)
    except NotFound:
        found = None
    if found is None or found.destination_id != dest.id or found.kind != RunKind.REPLAY:
        raise NotFound(f"no replay {run!r} of destination {dest.name!r}; run is 'live' or "
                       "the id of one of its replays", field="run")
    return [found]


def keys_for(known: Iterable[CountKey], step: str, action: str,
             reason: str | None) -> list[CountKey]:
    """The outcome keys a funnel step stands for (``known``: the runs' counter keys)."""
    if step not in STEPS:
        raise BadRequest(f"step must be one of {', '.join(STEPS)}; got {step!r}", field="step")
    if step == "received":
        return [RECEIVED]
    if step in ("matched", "mapped", "sent") and not action:
        raise BadRequest(f"{step} is counted per action: give action=NAME", field="action")
    if step == "sent":
        return [(action, Outcome.SENT, "")]
    mine = sorted(k for k in known if k[0] == action and k[1] in _ENDINGS)
    if step in ("skipped", "dead_lettered"):
        if reason is not None:
            return [(action, step, reason)]
        return [k for k in mine if k[1] == step]
    if step == "mapped":
        left_out = {(action, Outcome.SKIPPED, TOO_OLD),
                    (action, Outcome.DEAD_LETTERED, "mapping error")}
        return [k for k in mine if k not in left_out]
    return mine


async def events_behind(runs: RunStore, log: EventLog, dest: Destination, *, run: str,
                        step: str, action: str = "", reason: str | None = None,
                        cursor: str | None = None, limit: int = 50,
                        kept_days: int = 30) -> dict:
    """One page of the events behind a count, newest first: ``{"events": [{"seq",
    "event"}], "next_cursor"}`` (``event`` None when the log no longer holds it).

    ``kept_days`` is the outcome rows' retention (``delivery.outcome_retention_days``):
    ``older_unlisted`` says whether the runs are older than it, so that the count may
    include events finished before the window that are no longer listed."""
    chosen = await asyncio.to_thread(runs_of, runs, dest, run)
    oldest = min((r.created_at for r in chosen), default=time.time())
    known = {k for r in chosen for k in r.counts}
    keys = keys_for(known, step, action, reason)
    page = await asyncio.to_thread(runs.outcome_events, [r.id for r in chosen], keys,
                                   cursor=cursor, limit=limit)
    events = [{"seq": seq, "event": await event_at(log, seq)} for seq in page.seqs]
    return {"destination": dest.id, "run": run, "step": step, "action": action,
            "reason": reason, "events": events, "next_cursor": page.next_cursor,
            "kept_days": kept_days,
            "older_unlisted": oldest < time.time() - kept_days * 86_400}
