"""The SQLite backend as a whole: its files in the data dir and what they weigh."""

from __future__ import annotations

from millpond.storage.sqlite import SQLiteStorage

from ..helpers import ev


def test_store_sizes_count_the_write_ahead_log(tmp_path):
    storage = SQLiteStorage(tmp_path)
    try:
        storage.log.submit([ev(f"m{i}") for i in range(50)]).result()
        # The per-person index follows the log on its own thread: let it finish, or
        # activity.db grows between sizes() and the look at the disk (a flake under load).
        assert storage._people is not None
        storage._people.catch_up()
        sizes = storage.sizes()
        assert set(sizes) == {"log.db", "state.db", "profiles.db", "activity.db",
                              "segments.db"}
        assert (tmp_path / "log.db-wal").stat().st_size > 0  # committed, not checkpointed
        for name, size in sizes.items():
            on_disk = [tmp_path / name, tmp_path / f"{name}-wal"]
            assert size == sum(p.stat().st_size for p in on_disk if p.exists()) > 0
    finally:
        storage.close()
