"""A definition over the whole log, nothing saved: how many people it holds now, and some.

Why as a build without its writes: a preview used to read the whole log decoding every
event in full to list the people, then every person's events one by one through the
per-person index, and so stopped at the first 20,000 people (8 s for a million events,
and the count was not the count). One scan of the log for the definition's event
conditions (:class:`~.scan.LogScan`: the events' heads, bodies only where a ``where``
needs them), the people resolved a few thousand at a time, and every one of them
evaluated from the scan's compact data is what a build does before it writes; the count
is exact, over everyone, and the sample is each member's state as a build would store it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING

import msgspec

from millpond.storage.models import Segment

from .build import BATCH, people_of
from .definition import Condition
from .evaluate import Evaluator, Membership
from .people import Person
from .plan import SegmentPlan, compile_plans, memberships
from .scan import LogScan, event_conditions

if TYPE_CHECKING:
    from .engine import SegmentEngine


class Preview(msgspec.Struct):
    """``count`` members among ``people`` (everyone in the log); ``sample``: the first
    members in person id order, with their state."""

    count: int
    people: int
    sample: list[tuple[Person, Membership]]


async def preview_of(engine: SegmentEngine, key: str, condition: Condition,
                     definitions: Mapping[str, Condition], sample: int) -> Preview:
    """``condition`` as the segment ``key`` among the saved ``definitions`` (those its
    ``in_segment`` conditions name), over the log as it stands now."""
    storage = engine.storage
    upto = storage.log.last_seq()
    if engine.profiles_upto is not None:
        await engine.profiles_upto(upto)
    every = {**definitions, key: condition}
    scan = LogScan(event_conditions(every, [key]))
    await scan.read_log(storage.log, upto)
    people = await people_of(engine, scan)
    evaluator = Evaluator(every)
    plans = compile_plans(evaluator, every, [Segment("", key, key, {})], scan)
    now = engine.clock()
    count, found = 0, []
    for start in range(0, len(people), BATCH):
        # On a worker thread, a batch at a time: CPU that would hold up requests.
        batch = await asyncio.to_thread(_members, evaluator, plans, scan,
                                        people[start:start + BATCH], now)
        count += len(batch)
        found += batch[:sample - len(found)]
    return Preview(count, len(people), found)


def _members(evaluator: Evaluator, plans: list[SegmentPlan], scan: LogScan,
             people: list[Person], now: int) -> list[tuple[Person, Membership]]:
    out = []
    for person in people:
        [m] = memberships(evaluator, plans, scan, person.ids, person.profile, now)
        if m.member:
            out.append((person, m))
    return out
