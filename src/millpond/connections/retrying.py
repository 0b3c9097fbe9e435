"""The events a destination is retrying now: what its pumps hold for a next attempt.

Why from memory and not from stored rows: an event waiting for a retry has not ended, so
no checkpoint has recorded it yet (its outcome is written when it ends: sent, or
dead-lettered once the destination gave up); only the sender knows which events a
failing request carries (:attr:`~millpond.delivery.sender.Deliverer.holding`). So the
funnel's "retrying now" is a gauge, not a counter: the events held right now, per run
(``live``: the live pump and redrives; or one replay) and action, each with its failed
attempts, when the next one is due and the vendor's last answer. Once such an event
ends, it is counted and listed under its outcome like any other. The ``retried``
counter (attempts, not events, kept for ever) stays in the stats and ``/metrics``.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from millpond.connections.behind import runs_of
from millpond.connections.lookup import event_at
from millpond.connections.runner import LiveDestination
from millpond.delivery.outcomes import Outcome
from millpond.storage.contracts import EventLog, RunStore
from millpond.storage.models import Destination


def held(live: LiveDestination | None) -> list[dict]:
    """One entry per event and action the destination's deliverer holds, by seq."""
    if live is None:
        return []
    out = []
    for hold in list(live.deliverer.holding.values()):
        for work in list(hold.works):
            event = work.event
            out.append({"seq": event.get("seq") or 0, "message_id": event.get("messageId"),
                        "action": work.action, "run": hold.run, "attempts": hold.attempts,
                        "failing_since": hold.failing_since,
                        "next_attempt_at": hold.next_attempt_at, "reason": hold.reason,
                        "status": hold.status, "response": hold.response})
    out.sort(key=lambda e: (e["seq"], e["action"]))
    return out


def counts(live: LiveDestination | None) -> dict[str, Counter[str]]:
    """Events held now, per run (``live`` or a replay id) and action: the funnel's
    "retrying now" column."""
    out: dict[str, Counter[str]] = {}
    for entry in held(live):
        out.setdefault(entry["run"], Counter())[entry["action"]] += 1
    return out


async def retrying(runs: RunStore, log: EventLog, dest: Destination,
                   live: LiveDestination | None, *, run: str = "live",
                   action: str | None = None, limit: int = 100) -> dict:
    """The events ``dest`` holds for a next attempt now, in ``run`` (NotFound, field
    ``run``, for a replay of another destination), of ``action`` when given: the first
    ``limit`` by seq, each with its stored event; ``total`` counts them all, and
    ``retry_attempts`` is the run's ``retried`` counter (failed attempts times items,
    since the run began)."""
    chosen = await asyncio.to_thread(runs_of, runs, dest, run)
    found = [e for e in held(live)
             if e["run"] == run and (action is None or e["action"] == action)]
    attempts = sum(n for r in chosen for (a, outcome, _), n in r.counts.items()
                   if outcome == Outcome.RETRIED and (action is None or a == action))
    events = [{**e, "event": await event_at(log, e["seq"])} for e in found[:limit]]
    return {"destination": dest.id, "run": run, "action": action, "total": len(found),
            "retry_attempts": attempts, "events": events}
