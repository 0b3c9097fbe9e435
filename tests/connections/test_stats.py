"""Delivery counters as people read them: totals, and the same per action."""

from __future__ import annotations

from collections import Counter

from millpond.connections.stats import summarize


def test_summary_totals_and_per_action():
    totals = Counter({("a", "sent", ""): 5, ("b", "sent", ""): 1,
                      ("a", "skipped", "older than trigger window"): 2,
                      ("", "skipped", "no action handles group"): 3,
                      ("a", "dead_lettered", "HTTP 400"): 1, ("a", "retried", ""): 4})
    s = summarize(totals)
    assert (s["sent"], s["dead_lettered"], s["retried"]) == (6, 1, 4)
    assert s["skipped"] == {"older than trigger window": 2, "no action handles group": 3}
    assert s["actions"]["a"]["dead_lettered_by"] == {"HTTP 400": 1}
    assert s["actions"]["b"]["sent"] == 1 and "" not in s["actions"]
