"""Ledger: the cursor passes only finished events; outcomes are released with it."""

from __future__ import annotations

import pytest

from millpond.delivery import ledger as ledger_module
from millpond.delivery.ledger import Ledger

SENT = ("a", "sent", "")


@pytest.fixture(autouse=True, params=["one by one", "in runs"])
def way(request, monkeypatch):
    """Every test both ways the ledger settles: one step per event (the few events these
    tests finish at a time) and run by run in C (what a batch of thousands takes)."""
    if request.param == "in runs":
        monkeypatch.setattr(ledger_module, "SMALL", 0)
    return request.param


def test_cursor_stops_below_the_lowest_unfinished_event():
    ledger = Ledger(10)
    ledger.open(11, 1)
    ledger.open(12, 0, counts=[("", "skipped", "no action handles group")])
    ledger.open(13, 2)
    assert ledger.cursor == 10
    ledger.done(13, SENT)
    ledger.done(13, SENT)
    assert ledger.cursor == 10  # 11 is still in flight
    ledger.done(11, SENT)
    assert ledger.cursor == 13
    assert ledger.oldest_open() is None


def test_events_finished_out_of_order_wait_for_the_head():
    ledger = Ledger(0)
    for seq in (1, 2, 3):
        ledger.open(seq, 1, received=f"r{seq}")
    ledger.done(3, SENT)
    ledger.done(2, SENT)
    assert ledger.cursor == 0 and ledger.oldest_open() == (1, "r1")
    ledger.done(1, SENT)
    assert ledger.cursor == 3 and ledger.unfinished == 0


def test_outcomes_are_released_only_when_the_cursor_passes_them():
    ledger = Ledger(0)
    ledger.open(1, 1)
    ledger.open(2, 0, counts=[("a", "skipped", "missing required field x")],
                dead=[{"seq": 2, "action": "a", "reason": "r"}])
    cursor, counts, dead, _ = ledger.take()
    assert (cursor, dict(counts), dead) == (0, {}, [])
    ledger.done(1, SENT)
    cursor, counts, dead, _ = ledger.take()
    assert cursor == 2
    assert dict(counts) == {SENT: 1, ("a", "skipped", "missing required field x"): 1}
    assert [d["seq"] for d in dead] == [2]
    assert not ledger.dirty


def test_retries_are_counted_at_once():
    ledger = Ledger(0)
    ledger.open(1, 1)
    ledger.count(("a", "retried", ""), 3)
    _, counts, _, _ = ledger.take()
    assert dict(counts) == {("a", "retried", ""): 3}


def test_give_back_after_a_failed_write_loses_nothing():
    ledger = Ledger(0)
    ledger.open(1, 0, counts=[SENT])
    taken = ledger.take()
    ledger.give_back(taken[0], taken[1], taken[2], taken[3])
    assert ledger.dirty
    cursor, counts, _, _ = ledger.take()
    assert cursor == 1 and dict(counts) == {SENT: 1}


def test_keep_finished_lists_finished_seqs_for_redrives():
    ledger = Ledger(0, keep_finished=True)
    ledger.open(5, 1)
    ledger.open(9, 0)
    ledger.done(5, SENT)
    assert ledger.take()[3] == [5, 9]


def test_a_sent_batch_finishes_its_events_at_once_and_keeps_earlier_outcomes():
    ledger = Ledger(0)
    ledger.open(1, 2, received="r1")  # two items: one in this batch, one still batched
    ledger.open(2, 1, received="r2", counts=[("b", "skipped", "missing required field x")])
    ledger.open(3, 1, received="r3")
    ledger.done_all([1, 2, 3], SENT)
    assert ledger.cursor == 0 and ledger.oldest_open() == (1, "r1")
    ledger.done_all([1], ("c", "sent", ""))
    cursor, counts, _, _ = ledger.take()
    assert cursor == 3 and ledger.unfinished == 0 and ledger.oldest_open() is None
    assert dict(counts) == {SENT: 3, ("c", "sent", ""): 1,
                            ("b", "skipped", "missing required field x"): 1}


def test_an_item_reported_twice_is_a_bug_not_a_silent_double_count():
    ledger = Ledger(0)
    ledger.open(1, 1)
    ledger.done(1, SENT)
    with pytest.raises(KeyError):
        ledger.done(1, SENT)
    with pytest.raises(KeyError):
        ledger.done_all([1], SENT)


def test_released_runs_of_batches_count_every_event_once():
    ledger = Ledger(0)
    other = ("b", "sent", "")
    for seq in range(1, 11):
        ledger.open(seq, 0 if seq == 5 else 1)  # 5: nothing to send, nothing to count
    ledger.done_all([7, 8, 9, 10], other)
    ledger.done_all([1, 2, 3], SENT)
    ledger.done(6, ("a", "dead_lettered", "HTTP 400"), {"seq": 6})
    assert ledger.cursor == 3
    ledger.done_all([4], ("a", "sent", ""))  # equal to SENT, another tuple
    cursor, counts, dead, _ = ledger.take()
    assert cursor == 10 and ledger.unfinished == 0 and dead == [{"seq": 6}]
    assert dict(counts) == {SENT: 4, other: 4, ("a", "dead_lettered", "HTTP 400"): 1}


def test_released_events_are_listed_by_outcome_with_their_keys():
    """The events behind each count: keys by outcome key, released with the cursor (a
    replay's positions become seqs in its checkpoint: tests/delivery/test_checkpoint.py)."""
    skip = ("", "skipped", "no action handles group")
    dead = ("a", "dead_lettered", "HTTP 400")
    ledger = Ledger(-1)
    ledger.open(0, 0, counts=[skip])  # nothing open before: released at once
    ledger.open(1, 2)
    ledger.open(2, 1)
    ledger.open(3, 0, counts=[skip])
    ledger.done_all([1, 2], SENT)
    assert ledger.take_outcomes() == {("", "received", ""): [0], skip: [0]}
    ledger.done(1, dead)
    outcomes = ledger.take_outcomes()
    assert outcomes == {("", "received", ""): [1, 2, 3], SENT: [1, 2], dead: [1],
                        skip: [3]}
    ledger.give_back_outcomes(outcomes)  # a failed write: listed again next time
    ledger.open(4, 0, counts=[skip])
    again = ledger.take_outcomes()
    assert again[skip] == [3, 4] and again[("", "received", "")] == [1, 2, 3, 4]


def test_runs_of_outcomes_are_listed_and_counted_in_release_order():
    """Released run by run (one ``extend`` per run of equal outcomes): the lists and the
    counters are what one step per event gave, across runs, gaps and mixed outcomes."""
    other = ("b", "sent", "")
    skip = ("", "skipped", "no action handles group")
    ledger = Ledger(0)
    for seq in range(1, 13):
        ledger.open(seq, 0 if seq in (4, 9) else 1, counts=[skip] if seq == 9 else None)
    ledger.done_all([1, 2, 3], SENT)
    ledger.done_all([5, 6], other)
    ledger.done_all([7, 8], ("a", "sent", ""))  # equal to SENT, another tuple
    ledger.done(10, SENT)
    ledger.done(10 + 1, other, {"seq": 11})
    ledger.done_all([12], SENT)
    cursor, counts, dead, _ = ledger.take()
    assert cursor == 12 and dead == [{"seq": 11}]
    assert dict(counts) == {SENT: 7, other: 3, skip: 1}
    outcomes = ledger.take_outcomes()
    assert outcomes == {("", "received", ""): list(range(1, 13)),
                        SENT: [1, 2, 3, 7, 8, 10, 12], other: [5, 6, 11], skip: [9]}
