"""The log scan (segments/scan.py) keeps, per id and event condition, exactly the
counting times membership needs, whatever order the events come in: the ``k``
earliest for a count (``k = max(at_least, at_most + 1)``), every one for a
``within`` window."""

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from millpond.segments.definition import EventCondition, parse_definition
from millpond.segments.scan import LogScan
from millpond.storage.models import StoredEvent

DEFINITIONS = [
    {"event": "Order Completed"},
    {"event": "Order Completed", "at_least": 2},
    {"event": "Order Completed", "at_least": 3, "at_most": 4},
    {"event": "Order Completed", "within": "30d"},
]


def conditions() -> list[EventCondition]:
    parsed = [parse_definition(d) for d in DEFINITIONS]
    found = [c for c in parsed if isinstance(c, EventCondition)]
    assert len(found) == len(parsed)
    return found


def rows(times: list[int], user: str = "ann") -> list[StoredEvent]:
    return [StoredEvent(seq, ts, msgspec.json.encode(
        {"type": "track", "event": "Order Completed", "userId": user}))
            for seq, ts in enumerate(times, start=1)]


@given(times=st.lists(st.integers(0, 10**12), min_size=1, max_size=12),
       split=st.integers(0, 12))
@settings(max_examples=200, deadline=None)
def test_each_condition_keeps_the_times_that_decide_it_in_any_order(times, split):
    scan = LogScan(conditions())
    # In two reads, as the follower takes events in: the state carries over.
    scan.feed(rows(times)[:split])
    scan.feed(rows(times)[split:])
    first, merged = scan.gather(["ann"])
    ordered = sorted(times)
    assert first == ordered[0]
    assert merged == [ordered[:1], ordered[:2], ordered[:5], ordered]


@given(ann=st.lists(st.integers(0, 10**12), max_size=6),
       bob=st.lists(st.integers(0, 10**12), max_size=6))
@settings(max_examples=100, deadline=None)
def test_a_person_of_several_ids_counts_the_events_of_all(ann, bob):
    scan = LogScan(conditions())
    scan.feed(rows(ann, "ann") + rows(bob, "bob"))
    _, merged = scan.gather(["ann", "bob"])
    ordered = sorted(ann + bob)
    assert merged == [ordered[:1], ordered[:2], ordered[:5], ordered]


def test_two_scans_joined_hold_both_slots_for_every_id():
    """The follower's state and a build's scan, joined: each id keeps the earliest first
    event time and both scans' counting times, an id only one of them holds (its other
    events gone from the log meanwhile) gets none for the other's conditions."""
    first, second = conditions()[:1], conditions()[1:2]
    live, built = LogScan(first), LogScan(second)
    live.feed(rows([50, 40], "ann") + rows([30], "cat"))
    built.feed(rows([50, 40, 10], "ann") + rows([20], "bob"))
    both = live.joined(built)
    assert both.gather(["ann"]) == (10, [[40], [10, 40]])
    assert both.gather(["bob"]) == (20, [[], [20]])
    assert both.gather(["cat"]) == (30, [[30], []])
    assert both.covers([*first, *second]) and not live.covers(second)
