"""The load-stats contract over every backend: per-table totals of warehouse loads add up,
stay per destination, survive a reopen (durable backends) and can be forgotten."""

from __future__ import annotations

from millpond.storage.models import TableLoadStats


def test_totals_add_up_per_table_and_per_destination(storage):
    stats = storage.load_stats
    assert stats.get("dst_a") == {}
    stats.add("dst_a", {"tracks": (10, 0), "order_completed": (10, 2)}, at=100.0)
    stats.add("dst_a", {"tracks": (5, 1)}, at=200.0)
    stats.add("dst_b", {"tracks": (7, 0)}, at=300.0)
    stats.add("dst_a", {}, at=400.0)  # an empty load changes nothing
    assert stats.get("dst_a") == {
        "order_completed": TableLoadStats(10, 2, 100.0),
        "tracks": TableLoadStats(15, 1, 200.0),
    }
    assert stats.get("dst_b") == {"tracks": TableLoadStats(7, 0, 300.0)}
    stats.forget("dst_a")
    stats.forget("dst_a")
    assert stats.get("dst_a") == {}
    assert stats.get("dst_b") == {"tracks": TableLoadStats(7, 0, 300.0)}


def test_totals_survive_a_reopen(durable_backend):
    first = durable_backend.open()
    first.load_stats.add("dst_a", {"users": (3, 0), "tracks": (9, 4)}, at=50.0)
    first.close()
    again = durable_backend.open()
    try:
        assert again.load_stats.get("dst_a") == {"tracks": TableLoadStats(9, 4, 50.0),
                                                  "users": TableLoadStats(3, 0, 50.0)}
    finally:
        again.close()
