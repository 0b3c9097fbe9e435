"""Delivery counters as people read them: totals, and the same per action.

Counters are stored flat as ``(action, outcome, reason) -> n`` (a delivery run's
``counts``); this module is the one place that shapes them into the
``stats`` of ``GET /api/destinations/{id}`` and ``millpond destinations stats``.

Stats count each event once, in its final outcome: a dead letter a redrive took back
(``redriven``, counted apart so that stored counters only grow) is no longer
``dead_lettered``; its event's new outcome is counted by the redrive.
"""

from __future__ import annotations

from collections import Counter

from millpond.delivery.outcomes import Outcome


def _blank() -> dict:
    return {"sent": 0, "skipped": {}, "dead_lettered": 0, "retried": 0}


def summarize(totals: Counter) -> dict:
    """``{"sent", "skipped": {reason: n}, "dead_lettered", "retried", "actions": {...}}``;
    per action, ``dead_lettered_by`` splits dead letters by category (``HTTP 400``...)."""
    out = _blank()
    actions: dict[str, dict] = {}
    final = Counter(totals)
    for (action, outcome, reason), n in totals.items():
        if outcome == Outcome.REDRIVEN:
            del final[action, outcome, reason]
            final[action, Outcome.DEAD_LETTERED.value, reason] -= n
    for (action, outcome, reason), n in sorted(final.items()):
        if not n:
            continue
        per = actions.setdefault(action, {**_blank(), "dead_lettered_by": {}}) \
            if action else None
        if outcome == Outcome.SENT:
            out["sent"] += n
            if per is not None:
                per["sent"] += n
        elif outcome == Outcome.SKIPPED:
            out["skipped"][reason] = out["skipped"].get(reason, 0) + n
            if per is not None:
                per["skipped"][reason] = per["skipped"].get(reason, 0) + n
        elif outcome == Outcome.DEAD_LETTERED:
            out["dead_lettered"] += n
            if per is not None:
                per["dead_lettered"] += n
                per["dead_lettered_by"][reason] = per["dead_lettered_by"].get(reason, 0) + n
        elif outcome == Outcome.RETRIED:
            out["retried"] += n
            if per is not None:
                per["retried"] += n
    out["actions"] = actions
    return out
