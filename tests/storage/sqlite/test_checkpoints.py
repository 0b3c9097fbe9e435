"""The log's checkpointer thread and precomputed dedupe keys, on a real SQLite file."""

from __future__ import annotations

import json
import sqlite3
import threading
import time

from millpond.storage.models import NewEvent
from millpond.storage.sqlite.dedupe import dedupe_hash
from millpond.storage.sqlite.log import SQLiteEventLog


def event(i: int, *, key: bool = False, size: int = 2_000) -> NewEvent:
    message_id = f"m{i}"
    body = json.dumps({"messageId": message_id, "pad": "x" * size}).encode()
    return NewEvent("src_a", "track", message_id, "E", "u1", None, 1_000 + i, 2_000, body,
                    dedupe_hash("src_a", message_id) if key else None)


def wait_until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def checkpointers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "millpond-log-checkpointer"]


def test_the_checkpointer_copies_the_wal_into_the_database_and_stops_on_close(tmp_path):
    path = tmp_path / "log.db"
    before = len(checkpointers())
    log = SQLiteEventLog(path)
    assert len(checkpointers()) == before + 1
    start = path.stat().st_size
    # ~6 MB of bodies: past the point where the writer wakes the checkpointer, and far
    # below the WAL size at which the writer would checkpoint by itself.
    log.submit([event(i) for i in range(3_000)]).result()
    wait_until(lambda: path.stat().st_size > start + 5_000_000)  # pages reached the db file
    with sqlite3.connect(path) as reader:
        assert reader.execute("SELECT COUNT(*) FROM events").fetchone() == (3_000,)
    log.close()
    assert len(checkpointers()) == before


def test_a_precomputed_dedupe_key_dedupes_like_the_log_own(tmp_path):
    log = SQLiteEventLog(tmp_path / "log.db")
    first = log.submit([event(1, key=True, size=10), event(2, size=10)]).result()
    again = log.submit([event(1, size=10), event(2, key=True, size=10),
                        event(3, key=True, size=10)]).result()
    assert first.seqs == [1, 2]
    assert again.seqs == [None, None, 3]
    log.close()
    with sqlite3.connect(tmp_path / "log.db") as conn:
        assert sorted(conn.execute("SELECT h FROM dedupe_runs UNION ALL"  # a run or recent
                                   " SELECT h FROM dedupe_recent").fetchall()) == sorted(
            (dedupe_hash("src_a", f"m{i}"),) for i in (1, 2, 3))
