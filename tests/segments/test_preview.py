"""Preview (segments/preview.py): an unsaved definition holds exactly the people, with
the same ``since``, that a build of it then stores, over everyone in the log; the sample
is the first members in person id order."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from millpond.segments.definition import parse_definition
from millpond.segments.preview import preview_of
from millpond.storage.memory import MemoryStorage

from .harness import Clock, Harness
from .test_order_independence import NOW, SEGMENTS, histories, messages


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories, which=st.integers(0, len(SEGMENTS) - 1), sample=st.integers(1, 3))
def test_a_preview_is_what_a_build_then_stores(history, which, sample):
    async def both():
        h = Harness(MemoryStorage(), Clock(NOW))
        await h.send(*messages(history))
        for saved in SEGMENTS[:which]:  # the segments an in_segment may name
            await h.add_segment(*saved)
        sid, key, definition = SEGMENTS[which]
        _, definitions = h.engine.definitions()
        found = await preview_of(h.engine, key, parse_definition(definition), definitions,
                                 sample)
        await h.add_segment(sid, key, definition)
        stored = {m.person_id: m.since_ms
                  for m in h.storage.segments.members(sid, limit=1000).members}
        return found, stored

    found, stored = asyncio.run(both())
    assert found.count == len(stored)
    assert [(person.id, m.since_ms) for person, m in found.sample] == \
        sorted(stored.items())[:sample]
    assert all(m.member for _, m in found.sample)
