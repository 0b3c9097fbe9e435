"""Batcher: count, bytes and linger limits, per group key, oldest batch first."""

from __future__ import annotations

from millpond.delivery.batcher import Batcher, Work


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def work(seq: int, size: int = 10, action: str = "a") -> Work:
    return Work(seq, action, {"n": seq}, {"seq": seq}, size)


def test_full_by_count():
    b = Batcher(max_events=3, max_bytes=10_000, linger=5, clock=Clock())
    assert b.add("k", work(1)) == [] and b.add("k", work(2)) == []
    (batch,) = b.add("k", work(3))
    assert [w.seq for w in batch.items] == [1, 2, 3] and len(b) == 0


def test_full_by_bytes_without_exceeding_the_limit():
    b = Batcher(max_events=100, max_bytes=25, linger=5, clock=Clock())
    assert b.add("k", work(1, 10)) == []
    assert b.add("k", work(2, 10)) == []
    (batch,) = b.add("k", work(3, 10))  # 30 > 25: the first two leave, 3 starts anew
    assert [w.seq for w in batch.items] == [1, 2] and batch.size == 20
    assert len(b) == 1


def test_an_item_over_max_bytes_travels_alone():
    b = Batcher(max_events=100, max_bytes=25, linger=5, clock=Clock())
    b.add("k", work(1, 10))
    ready = b.add("k", work(2, 99))
    assert [[w.seq for w in x.items] for x in ready] == [[1], [2]]


def test_linger_releases_partial_batches_oldest_first():
    clock = Clock()
    b = Batcher(max_events=100, max_bytes=10_000, linger=1.0, clock=clock)
    b.add("track", work(1))
    clock.now = 0.5
    b.add("identify", work(2))
    assert b.due() == [] and b.next_deadline() == 1.0
    clock.now = 1.0
    assert [x.key for x in b.due()] == ["track"]
    assert b.next_deadline() == 1.5
    clock.now = 2.0
    assert [x.key for x in b.due()] == ["identify"]
    assert b.next_deadline() is None


def test_zero_linger_holds_nothing_past_the_current_chunk():
    b = Batcher(max_events=10, max_bytes=10_000, linger=0, clock=Clock())
    assert b.add("k", work(1)) == [] and b.add("k", work(2)) == []
    assert [len(x) for x in b.due()] == [2]
    assert b.next_deadline() is None


def test_groups_do_not_mix_and_drain_keeps_start_order():
    clock = Clock()
    b = Batcher(max_events=10, max_bytes=10_000, linger=10, clock=clock)
    b.add("b", work(1))
    clock.now = 1
    b.add("a", work(2))
    b.add("b", work(3))
    drained = b.drain()
    assert [(x.key, [w.seq for w in x.items]) for x in drained] == [("b", [1, 3]),
                                                                     ("a", [2])]
