"""Checkpoints: cursor, counters and dead letters commit together or not at all."""

from __future__ import annotations

from collections import Counter

import pytest

from millpond.pumps.dead_letters import DeadLetterStore
from millpond.pumps.progress import ProgressStore
from millpond.pumps.stats import summarize
from millpond.state import StateDB


@pytest.fixture
def db(tmp_path):
    state = StateDB(tmp_path / "state.db")
    yield state
    state.close()


def dead(seq: int, action: str = "a") -> dict:
    return {"seq": seq, "message_id": f"m{seq}", "action": action, "reason": "HTTP 400: no",
            "status": 400, "response": "no", "payload": {"x": seq}}


def test_counters_accumulate_and_survive_reopening(db, tmp_path):
    store = ProgressStore(db)
    store.checkpoint("d", cursor=5, counts=Counter({("a", "sent", ""): 3}))
    store.checkpoint("d", cursor=9, counts=Counter({("a", "sent", ""): 2,
                                                    ("", "skipped", "no action handles x"): 1}))
    db.close()
    again = ProgressStore(StateDB(tmp_path / "state.db"))
    assert again.cursor("d") == 9
    assert again.counts("d") == {("a", "sent", ""): 5, ("", "skipped", "no action handles x"): 1}


def test_a_failed_checkpoint_changes_nothing(db):
    store = ProgressStore(db)
    store.checkpoint("d", cursor=1, counts=Counter({("a", "sent", ""): 1}), dead=[dead(1)])
    with pytest.raises(KeyError):
        store.checkpoint("d", cursor=2, counts=Counter({("a", "sent", ""): 1}),
                         dead=[dead(2), {"seq": 3}])  # the second row is malformed
    assert store.cursor("d") == 1
    assert store.counts("d") == {("a", "sent", ""): 1}
    assert [r["seq"] for r in DeadLetterStore(db).list("d")] == [1]


def test_dead_letters_claim_release_recover_and_redriven(db):
    store, letters = ProgressStore(db), DeadLetterStore(db)
    store.checkpoint("d", dead=[dead(3), dead(1), dead(2)])
    store.checkpoint("other", dead=[dead(9)])
    ids = [r["id"] for r in letters.list("d")]
    claimed = letters.claim("d", None)
    assert [r["seq"] for r in claimed] == [1, 2, 3] and letters.count("d") == 0
    with pytest.raises(Exception, match="not in state dead"):
        letters.claim("d", [ids[0]])
    other = letters.list("other")[0]["id"]
    with pytest.raises(Exception, match="for this destination"):
        letters.claim("d", [other])
    letters.release([ids[0]])
    assert letters.count("d") == 1
    assert letters.recover() == 2 and letters.count("d") == 3
    letters.claim("d", [ids[1]])
    store.checkpoint("d", redriven=[ids[1]])
    row = letters.get(ids[1])
    assert row["state"] == "redriven" and row["redriven_at"].endswith("Z")
    assert row["payload"] == {"x": 1} and row["status"] == 400
    store.forget("d")
    assert letters.list("d", state=None) == [] and letters.count("other") == 1


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
