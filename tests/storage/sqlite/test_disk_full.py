"""SQLite's "database or disk is full" as the contracts' StorageUnavailable, one episode.

The full disk comes from SQLite itself: ``PRAGMA max_page_count`` caps the database at
the pages it has, so the next write that needs a page fails with SQLITE_FULL exactly as
on a full disk (``tests/server/test_disk_full.py`` fills a real tmpfs)."""

from __future__ import annotations

import logging
import time

from millpond.storage.contracts import StorageUnavailable
from millpond.storage.models import Source
from millpond.storage.sqlite import SQLiteStorage
from tests.support.wait import wait_until

from ..helpers import ev


def _source(n: int) -> Source:
    return Source(f"src_{n}", f"s{n}" + "x" * 2000, "pipelines", f"wk{n}", True,
                  created_at=float(n))


def _cap(conn) -> int:
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    return pages


def test_a_full_state_db_is_storage_unavailable_and_one_episode(tmp_path, caplog):
    storage = SQLiteStorage(tmp_path)
    caplog.set_level(logging.WARNING, logger="millpond.storage")
    try:
        conn = storage._state.conn()  # this thread's: the one the store writes on
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        _cap(conn)
        refused = 0
        for n in range(200):
            try:
                storage.sources.create(_source(n))
            except StorageUnavailable as exc:
                refused += 1
                assert exc.retry_after > 0 and "disk is full" in exc.message
        assert refused > 100
        episode = storage.health.snapshot()
        assert episode is not None and episode["refused"] == refused
        assert storage.health.refused_total == refused and storage.health.episodes_total == 1

        conn.execute("PRAGMA max_page_count = 1000000")  # space returns
        storage.sources.create(_source(999))  # the first write that commits ends it
        assert storage.health.snapshot() is None
        storage.log.submit([ev("after")]).result()
        messages = [r.getMessage() for r in caplog.records]
        assert sum("storage unavailable" in m for m in messages) == 1, messages
        assert sum("storage writable again" in m for m in messages) == 1, messages
    finally:
        storage.close()


def test_the_person_index_waits_out_a_full_disk_and_catches_up(tmp_path):
    """The per-person index follows the log on a thread of its own: a full disk there is
    an episode it waits out (the storage logs it), not the end of the thread."""
    storage = SQLiteStorage(tmp_path)
    people = storage._people
    assert people is not None
    try:
        with people._write_lock:
            write = people._write
            write.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            _cap(write)
        storage.log.submit([ev(f"m{i}", userId=f"user-{i}")
                            for i in range(3000)]).result()
        time.sleep(1.0)  # the commit nudged the index: it tries, and its disk is full
        assert people.position() == 0
        with people._write_lock:
            write.execute("PRAGMA max_page_count = 1000000")  # space returns
        wait_until(lambda: people.position() == storage.log.last_seq(), timeout=10,
                   what="the index caught up")
        assert people._thread.is_alive()
    finally:
        storage.close()
