"""The RegulationStore and PersonEraser contracts, over every backend: regulations kept
durably with their per-store status, and each store forgetting exactly the people asked
for (and nobody else), idempotently."""

from __future__ import annotations

import asyncio
import json

import pytest

from millpond.errors import NotFound
from millpond.storage.models import (
    DeadLetter,
    Member,
    Regulation,
    RegulationType,
    Rejection,
    Run,
    RunKind,
    RunState,
    Segment,
    StepStatus,
)

from ..helpers import ev

ADA = ["ada", "anon-ada"]


def regulation(rid: str, created: float) -> Regulation:
    return Regulation(rid, RegulationType.DELETE, ["ada"], [], ADA, "admin", created,
                      upto_seq=3, state="running", stores={"events": StepStatus()})


def test_regulations_are_kept_newest_first_and_updated(storage):
    store = storage.regulations
    store.create(regulation("r1", 1.0))
    store.create(regulation("r2", 2.0))
    assert [r.id for r in store.list()] == ["r2", "r1"]
    got = store.get("r1")
    assert got.ids == ADA and got.stores["events"].state == "pending"
    got.stores["events"] = StepStatus("done", removed=4)
    got.state = "finished"
    store.update(got)
    again = store.get("r1")
    assert (again.state, again.stores["events"].removed) == ("finished", 4)
    with pytest.raises(NotFound) as err:
        store.get("nope")
    assert err.value.field == "id"
    with pytest.raises(NotFound):
        store.update(regulation("nope", 3.0))


def _fill(storage) -> list[int]:
    seqs = storage.log.submit([
        ev("m1", userId="ada", traits={"email": "ada@example.com"}, kind="identify"),
        ev("m2", anonymousId="anon-ada"),
        ev("m3", userId="bob"),
        ev("m4", userId="ada", anonymousId="anon-ada"),
        ev("m5", anonymousId="anon-bob"),
    ]).result(10).seqs
    decoded = [{**json.loads(e.body), "seq": s} for s, e in zip(
        seqs, [asyncio.run(storage.log.get(s)) for s in seqs], strict=True) if e]
    storage.profiles.apply_many([
        {**decoded[0], "type": "identify", "userId": "ada", "anonymousId": "anon-ada",
         "traits": {"email": "ada@example.com"}, "timestamp": "2024-01-01T00:00:00Z"},
        {**decoded[2], "type": "identify", "userId": "bob",
         "traits": {"email": "bob@example.com"}, "timestamp": "2024-01-01T00:00:00Z"}])
    run = storage.runs.create(Run("r1", "d1", RunKind.LIVE, RunState.RUNNING, cursor=0))
    storage.runs.checkpoint(run.id, cursor=5, dead=[
        DeadLetter("d1", "r1", seqs[0], "m1", "a", "HTTP 400: no", 400, "no", {"x": 1}),
        DeadLetter("d1", "r1", seqs[2], "m3", "a", "HTTP 400: no", 400, "no", {"x": 3}),
        DeadLetter("d1", "r1", 999, "m9", "a", "HTTP 400: no", 400, "no",
                   {"user": "anon-ada"})])
    storage.rejections.add([
        Rejection("src_a", 0, "bad", "why", None, 1, b'{"userId":"ada","type":7}'),
        Rejection("src_a", 1, "bad", "why", None, 1, b'{"userId":"bob","type":7}')])
    storage.segments.create(Segment("s1", "buyers", "Buyers", {"event": "x"}))
    storage.segments.apply([
        Member("s1", "p-ada", True, 100, None, "ada", "anon-ada", ("ada", "anon-ada"), 5),
        Member("s1", "p-bob", True, 100, None, "bob", None, ("bob",), 5)])
    return [s for s in seqs if s is not None]


def test_the_eraser_forgets_exactly_the_people_asked_for(storage):
    seqs = _fill(storage)
    eraser = storage.eraser
    assert eraser.dead_letters(ADA) == 2
    assert eraser.events(ADA) == 3
    assert eraser.rejections(ADA) == 1
    assert eraser.profiles(ADA) == 1
    assert eraser.segment_memberships(ADA) == 1
    eraser.scrub()
    # seq holes where Ada's events were; Bob's stay, in order
    left = asyncio.run(storage.log.read(0, 100))
    assert [e.seq for e in left] == [seqs[2], seqs[4]]
    assert asyncio.run(storage.log.get(seqs[0])) is None
    assert asyncio.run(storage.index.person_events(ADA)) == []
    assert asyncio.run(storage.index.count_person_events(ADA)) == 0
    assert [e.seq for e in asyncio.run(storage.index.person_events(["bob"]))] == [seqs[2]]
    assert [d.seq for d in storage.runs.dead_letters("d1")] == [seqs[2]]
    assert [r.body for r in storage.rejections.list(None, 0, 10)] == [
        b'{"userId":"bob","type":7}']
    assert storage.profiles.get("ada") is None and storage.profiles.get("anon-ada") is None
    assert storage.profiles.get("bob") is not None
    assert storage.profiles.search("ada").people == []
    assert storage.segments.by_ids(ADA) == []
    assert storage.segments.member("s1", "p-ada") is None
    assert storage.segments.history("p-ada") == []
    assert storage.segments.member("s1", "p-bob") is not None
    # idempotent: a resumed job finds nothing more
    assert (eraser.dead_letters(ADA), eraser.events(ADA), eraser.rejections(ADA),
            eraser.profiles(ADA), eraser.segment_memberships(ADA)) == (0, 0, 0, 0, 0)
    # new events of the same person are stored again (a deletion is not a suppression)
    new = storage.log.submit([ev("m6", userId="ada")]).result(10).seqs
    assert new[0] is not None and new[0] > seqs[-1]


def test_the_eraser_names_whose_events_it_removes_before_removing_them(storage):
    seqs = storage.log.submit([
        ev("m1", userId="ada", anonymousId="anon-ada"),
        ev("m2", anonymousId="anon-ada"),
        ev("m3", userId="cal", anonymousId="anon-ada"),  # another user on Ada's device
        ev("m4", userId="cal"),
        ev("m5", userId="bob"),
        ev("m6", anonymousId="anon-bob"),
    ]).result(10).seqs
    eraser = storage.eraser
    assert eraser.event_owners(ADA) == {"ada": True, "anon-ada": False, "cal": True}
    assert eraser.event_owners(["anon-bob"]) == {"anon-bob": False}
    assert eraser.event_owners([]) == {} and eraser.event_owners(["nobody"]) == {}
    assert eraser.events(ADA) == 3  # event_owners removed nothing
    # What the owners have left is what the per-person index gives for them.
    left = asyncio.run(storage.index.person_events(["ada", "anon-ada", "cal"]))
    assert [e.seq for e in left] == [seqs[3]]
    assert eraser.event_owners(ADA) == {}


def test_a_deleted_event_is_forgotten_by_dedupe_too(storage):
    """Nothing of a deleted event is kept, its messageId included: sent again, it is
    stored again (a deletion is not a suppression). The segment engine relies on it: a
    person who comes back enters again with the Audience event's messageId of their
    first entry (their history went with them)."""
    first = storage.log.submit([ev("m1", userId="ada"), ev("m2", userId="bob")]).result(10)
    assert storage.eraser.events(ADA) == 1
    again = storage.log.submit([ev("m1", userId="ada"), ev("m2", userId="bob")]).result(10)
    assert again.seqs[0] is not None and again.seqs[0] > first.seqs[1]
    assert again.seqs[1] is None  # bob's is still there: a duplicate


def test_regulations_survive_a_reopen(durable_backend):
    storage = durable_backend.open()
    storage.regulations.create(regulation("r1", 1.0))
    storage.close()
    again = durable_backend.open()
    try:
        assert again.regulations.get("r1").stores["events"].state == "pending"
    finally:
        again.close()


def test_a_scan_in_chunks_does_not_see_the_events_erased_while_it_read(storage):
    storage.log.submit([ev(f"m{i}", userId="ada" if i % 2 else "bob")
                        for i in range(800)]).result(10)

    async def scan():
        log = storage.log
        first = await log.read(0, 100)
        erased = await asyncio.to_thread(storage.eraser.events, ADA)
        rest, after = [], first[-1].seq
        while rows := await log.read(after, 100):
            rest += rows
            after = rows[-1].seq
        return first, erased, rest

    first, erased, rest = asyncio.run(scan())
    assert len(first) == 100 and erased == 400
    assert len(rest) == 350  # Bob's 400, less the 50 the first chunk had
    assert {json.loads(e.body)["userId"] for e in rest} == {"bob"}
