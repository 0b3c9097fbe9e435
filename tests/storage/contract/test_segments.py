"""The SegmentStore contract, over every backend."""

import pytest

from millpond.errors import Conflict, NotFound
from millpond.storage.models import Member, Segment


def seg(sid: str, key: str, created: int = 1) -> Segment:
    return Segment(sid, key, key.title(), {"event": "Order Completed"}, created_ms=created)


def row(sid: str, pid: str, member: bool, since: int | None = 100, nxt: int | None = None,
        ids: tuple[str, ...] = (), processed: int = 5) -> Member:
    return Member(sid, pid, member, since, nxt, "u-" + pid, None, ids or ("u-" + pid,),
                  processed)


def test_definitions_crud(storage):
    store = storage.segments
    store.create(seg("s1", "buyers", 2))
    store.create(seg("s2", "vip", 1))
    with pytest.raises(Conflict) as err:
        store.create(seg("s3", "buyers"))
    assert err.value.field == "key"
    assert [s.id for s in store.list()] == ["s2", "s1"]
    assert store.get("buyers").id == "s1" and store.get("s2").key == "vip"
    changed = store.get("s1")
    changed.state, changed.build_done, changed.key = "ready", 7, "purchasers"
    store.update(changed)
    again = store.get("purchasers")
    assert (again.state, again.build_done, again.definition) == ("ready", 7,
                                                                 {"event": "Order Completed"})
    with pytest.raises(Conflict):
        store.update(Segment("s2", "purchasers", "x", {}))
    with pytest.raises(NotFound) as err:
        store.get("nope")
    assert err.value.field == "segment"
    with pytest.raises(NotFound):
        store.update(Segment("zz", "zz", "zz", {}))
    assert store.delete("s2").key == "vip"
    with pytest.raises(NotFound):
        store.delete("s2")


def test_apply_keeps_current_state_and_history(storage):
    store = storage.segments
    store.create(seg("s1", "buyers"))
    added = store.apply([row("s1", "p1", True, 100), row("s1", "p2", False, None)],
                        checkpoint=42)
    assert [(c.person_id, c.member, c.at_ms) for c in added] == [("p1", True, 100)]
    assert store.checkpoint() == 42
    # The same rows again: nothing new in the history (idempotent).
    assert store.apply([row("s1", "p1", True, 100)]) == []
    assert store.apply([row("s1", "p1", False, 300, processed=9)])[0].member is False
    assert store.apply([row("s1", "p1", True, 400, processed=11)])[0].at_ms == 400
    hist = store.history("p1")
    assert [(h.member, h.at_ms, h.processed_ms) for h in hist] == [
        (True, 100, 5), (False, 300, 9), (True, 400, 11)]
    assert store.history("p1", "other") == []
    assert store.member("s1", "p1").since_ms == 400
    assert store.member("s1", "p2").member is False
    assert store.member("s1", "p3") is None
    assert [m.segment_id for m in store.person_segments("p1")] == ["s1"]
    assert store.person_segments("p2") == []
    # Rows of an unknown segment are ignored.
    assert store.apply([row("gone", "p1", True)]) == []
    assert store.member("gone", "p1") is None


def test_history_counts_count_each_person_and_segment(storage):
    store = storage.segments
    store.create(seg("s1", "buyers"))
    store.create(seg("s2", "vip"))
    store.apply([row("s1", "p1", True, 100), row("s2", "p1", True, 100)])
    store.apply([row("s1", "p1", False, 200)])
    store.apply([row("s1", "p1", True, 300), row("s1", "p2", False, None)])
    many = [("s1", f"q{n}") for n in range(600)]  # more than one query's worth
    store.apply([row("s1", "q599", True, 1)])
    counts = store.history_counts([("s1", "p1"), ("s2", "p1"), ("s1", "p2"), ("s2", "p9"),
                                   *many])
    assert counts[("s1", "p1")] == len(store.history("p1", "s1")) == 3
    assert counts[("s2", "p1")] == 1
    assert counts[("s1", "p2")] == counts[("s2", "p9")] == counts[("s1", "q0")] == 0
    assert counts[("s1", "q599")] == 1 and len(counts) == 604
    assert store.history_counts([]) == {}


def test_members_are_cursor_paged_and_counted(storage):
    store = storage.segments
    store.create(seg("s1", "buyers"))
    store.apply([row("s1", f"p{i:02d}", i % 3 != 0) for i in range(20)])
    assert store.count_members("s1") == 13
    seen, cursor = [], None
    while True:
        page = store.members("s1", after=cursor, limit=5)
        seen += [m.person_id for m in page.members]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [f"p{i:02d}" for i in range(20) if i % 3 != 0]


def test_by_ids_finds_the_rows_a_merge_joins_and_drop_removes_them(storage):
    store = storage.segments
    store.create(seg("s1", "buyers"))
    store.create(seg("s2", "vip"))
    store.apply([row("s1", "pa", True, ids=("anon-1",)), row("s2", "pa", False, ids=("anon-1",)),
                 row("s1", "pb", True, ids=("user-1", "anon-2")),
                 row("s1", "pc", True, ids=("user-9",))])
    found = store.by_ids(["user-1", "anon-1", "nobody"])
    assert [(m.segment_id, m.person_id) for m in found] == [("s1", "pa"), ("s1", "pb"),
                                                             ("s2", "pa")]
    store.apply([row("s1", "pb", True, ids=("user-1", "anon-1", "anon-2"))],
                drop=[("s1", "pa"), ("s2", "pa")])
    assert [(m.segment_id, m.person_id) for m in store.by_ids(["anon-1"])] == [("s1", "pb")]
    assert store.member("s1", "pa") is None


def test_rewritten_rows_are_found_by_their_current_ids_and_state_only(storage):
    """A row written again keeping its ids (updated in place by SQLite), changing
    ``member`` or only its times, and a row whose ids changed: every read agrees."""
    store = storage.segments
    store.create(seg("s1", "buyers"))
    store.apply([row("s1", "pa", True, 100, nxt=900, ids=("u-a", "anon-a")),
                 row("s1", "pb", True, 100, ids=("u-b", "anon-b"))])
    # pa keeps its ids and its membership, with new times; pb keeps its ids, exits.
    store.apply([row("s1", "pa", True, 150, nxt=700, ids=("u-a", "anon-a"), processed=8),
                 row("s1", "pb", False, 200, ids=("u-b", "anon-b"), processed=8)])
    pa = store.member("s1", "pa")
    assert (pa.member, pa.since_ms, pa.next_change_ms, pa.processed_ms) == (True, 150, 700, 8)
    assert store.due(800) == [pa] and store.next_due() == 700
    assert [m.person_id for m in store.members("s1").members] == ["pa"]
    assert store.count_members("s1") == 1 and store.person_segments("pb") == []
    assert [(h.member, h.at_ms) for h in store.history("pb")] == [(True, 100), (False, 200)]
    assert len(store.history("pa")) == 1  # its membership did not change
    # pb's ids change: found by the new one, no longer by the one it lost.
    store.apply([row("s1", "pb", True, 300, ids=("u-b", "anon-c"))])
    assert [m.person_id for m in store.by_ids(["anon-c"])] == ["pb"]
    assert store.by_ids(["anon-b"]) == []
    assert [m.person_id for m in store.by_ids(["u-b"])] == ["pb"]
    assert store.member("s1", "pb").ids == ("u-b", "anon-c")


def test_schedule_is_found_by_time(storage):
    store = storage.segments
    store.create(seg("s1", "buyers"))
    assert store.next_due() is None
    store.apply([row("s1", "p1", True, nxt=500), row("s1", "p2", True, nxt=300),
                 row("s1", "p3", True, nxt=None)])
    assert store.next_due() == 300
    assert [m.person_id for m in store.due(400)] == ["p2"]
    assert [m.person_id for m in store.due(1000)] == ["p2", "p1"]
    assert [m.person_id for m in store.due(1000, limit=1)] == ["p2"]
    store.apply([row("s1", "p2", False, nxt=None)])
    assert store.next_due() == 500


def test_delete_removes_memberships_and_history(storage):
    store = storage.segments
    store.create(seg("s1", "buyers"))
    store.apply([row("s1", "p1", True, nxt=10)])
    store.delete("s1")
    assert store.history("p1") == [] and store.by_ids(["u-p1"]) == []
    assert store.due(100) == [] and store.person_segments("p1") == []


def test_segments_survive_a_reopen(durable_backend):
    first = durable_backend.open()
    first.segments.create(seg("s1", "buyers"))
    first.segments.apply([row("s1", "p1", True)], checkpoint=9)
    first.close()
    again = durable_backend.open()
    try:
        assert again.segments.get("buyers").id == "s1"
        assert again.segments.member("s1", "p1").member
        assert again.segments.checkpoint() == 9
    finally:
        again.close()


def test_rows_lists_members_and_non_members_of_one_segment(storage):
    store = storage.segments
    store.create(seg("s1", "buyers"))
    store.create(seg("s2", "vip"))
    store.apply([row("s1", "p2", False, None), row("s1", "p1", True, 100),
                 row("s2", "p3", True, 100)])
    assert [(r.person_id, r.member) for r in store.rows("s1")] == [("p1", True),
                                                                   ("p2", False)]
    assert store.rows("nope") == []


def test_apply_in_one_batch_compares_each_row_with_the_one_before(storage):
    store = storage.segments
    store.create(seg("s1", "buyers"))
    added = store.apply([row("s1", "p1", True, 100), row("s1", "p1", False, 200),
                         row("s1", "p1", False, 300)], drop=[("s1", "p9")])
    assert [(c.member, c.at_ms) for c in added] == [(True, 100), (False, 200)]
    assert store.member("s1", "p1").since_ms == 300


def test_retention_applied_keeps_each_sources_latest_cutoff(storage):
    store = storage.segments
    assert store.retention_applied() == {}
    store.set_retention_applied("src_a", 2000)
    store.set_retention_applied("src_b", 500)
    store.set_retention_applied("src_a", 1000)  # earlier: no change
    assert store.retention_applied() == {"src_a": 2000, "src_b": 500}
    store.set_retention_applied("src_b", 700)
    assert store.retention_applied() == {"src_a": 2000, "src_b": 700}


def test_retention_applied_survives_a_reopen(durable_backend):
    first = durable_backend.open()
    try:
        first.segments.set_retention_applied("src_a", 1234)
    finally:
        first.close()
    again = durable_backend.open()
    try:
        assert again.segments.retention_applied() == {"src_a": 1234}
    finally:
        again.close()
