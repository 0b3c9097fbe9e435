"""The replay preview (dry run): what a replay would do, computed by doing it without sending.

Why the preview runs the very evaluator the replay runs (filter, triggers, age windows,
mappings, required fields, ``validate_item``): what it shows must be what happens. It
streams over the window chunk by chunk and keeps only counters and a few samples, so
memory stays flat however large the window is.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import msgspec

from millpond.log.base import EventLog
from millpond.pumps.evaluate import SKIPPED
from millpond.pumps.replay_plan import scan_args

#: Distinct event names / error groups kept; the rest are folded into "(other)".
MAX_KEYS = 200
SAMPLES = 3
CHUNK = 5000


def human_duration(seconds: float) -> str:
    """``1000`` -> ``16 min 40 s``; ``90061`` -> ``1 d 1 h 1 min 1 s``."""
    s = int(round(seconds))
    if s < 1:
        return "under 1 s" if seconds > 0 else "0 s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if s >= size:
            parts.append(f"{s // size} {unit}")
            s %= size
    return " ".join(parts)


def _bump(counter: Counter, key: Any) -> None:
    if key in counter or len(counter) < MAX_KEYS:
        counter[key] += 1
    else:
        counter["(other)"] += 1


def run_preview(log: EventLog, plan: dict, evaluator, source_names: dict[str, str]) -> dict:
    """Scan the plan's window through ``evaluator`` (a :class:`ReplayEvaluator`) and count.

    Runs in a worker thread: it is pure CPU and SQLite reads."""
    started = time.perf_counter()
    excluded = {e["id"]: e for e in plan["excluded_sources"]}
    args = scan_args(plan)
    if excluded:  # scan them too, to say how many events they hold
        args["source_ids"] = (*plan["sources"], *excluded)
    decode = msgspec.json.Decoder().decode
    evaluate = evaluator.evaluate
    scanned = 0
    by_source: Counter = Counter()
    by_type: Counter = Counter()
    by_name: Counter = Counter()
    excluded_counts: Counter = Counter()
    sends: Counter = Counter()
    skipped: Counter = Counter()
    unhandled: Counter = Counter()
    errors: Counter = Counter()
    error_samples: dict[tuple[str, str], list] = {}
    samples: list[dict] = []
    events = 0
    for chunk in log.scan_window(batch=CHUNK, **args):
        for _ts, seq, body in chunk:
            scanned += 1
            event = decode(body)
            src = event.get("source_id")
            if src in excluded:
                excluded_counts[src] += 1
                continue
            events += 1
            event["seq"] = seq
            etype = event.get("type")
            by_source[src] += 1
            by_type[etype] += 1
            if etype == "track":
                _bump(by_name, event.get("event"))
            items, counts, dead = evaluate(event)
            for _key, work in items:
                sends[work.action] += 1
                if len(samples) < SAMPLES:
                    samples.append({"action": work.action, "seq": seq,
                                    "message_id": event.get("messageId"),
                                    "payload": work.payload})
            for action, outcome, reason in counts:
                if outcome == SKIPPED:
                    if not action and reason.startswith("no action handles"):
                        unhandled[etype] += 1
                    else:
                        skipped[(action, reason)] += 1
            for d in dead:
                key = (d["action"], d["reason"])
                _bump(errors, key)
                group = error_samples.setdefault(key, []) if key in errors else None
                if group is not None and len(group) < SAMPLES:
                    group.append({"seq": seq, "message_id": event.get("messageId"),
                                  "event": event})
    total_sends = sum(sends.values())
    rate = plan["rate"]
    seconds = total_sends / rate if rate else 0.0
    elapsed = time.perf_counter() - started
    names = dict(source_names)
    return {
        "events": events,
        "by_source": {names.get(k, k): n for k, n in by_source.most_common()},
        "by_type": dict(by_type.most_common()),
        "by_event": dict(by_name.most_common()),
        "actions": [{"action": a, "would_send": n} for a, n in sends.most_common()],
        "would_send": total_sends,
        "unhandled": [{"type": t, "events": n,
                       "reason": f"no action of this destination handles {t}",
                       "message": f"{n:,} {t} events: no action of this destination "
                                  f"handles {t}"} for t, n in unhandled.most_common()],
        "skipped": [{"action": a or None, "reason": r, "events": n}
                    for (a, r), n in skipped.most_common()],
        "mapping_errors": [{"action": k[0], "reason": k[1], "events": n,
                            "samples": error_samples.get(k, [])}
                           for k, n in errors.most_common() if isinstance(k, tuple)],
        "excluded": [{**e, "events": excluded_counts.get(e["id"], 0)}
                     for e in plan["excluded_sources"]],
        "samples": samples,
        "estimate": {"events": total_sends, "seconds": round(seconds, 3),
                     "human": human_duration(seconds), "rate": rate},
        "scan": {"scanned": scanned, "seconds": round(elapsed, 3),
                 "events_per_second": round(scanned / elapsed) if elapsed > 0 else None},
    }
