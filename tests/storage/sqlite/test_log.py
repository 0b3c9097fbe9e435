"""The SQLite log's own machinery: group commits, hash collisions, gapless seqs, queued
commits on close, back-pressure, a failed commit. What every backend promises is in
``tests/storage/contract``."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from millpond.errors import Overloaded
from millpond.storage.models import NewEvent
from millpond.storage.sqlite import dedupe, key_filter
from millpond.storage.sqlite.connection import connect
from millpond.storage.sqlite.log import SQLiteEventLog

from ..helpers import ev, wait_until
from .log_helpers import append_sync, filled_then_closed


@pytest.fixture
def log(tmp_path):
    opened = SQLiteEventLog(tmp_path / "log.db")
    yield opened
    opened.close()


def stored_ids(log: SQLiteEventLog) -> list[tuple[str, str]]:
    import json

    rows = log.read_sync(0, 10_000)
    return [(json.loads(e.body)["source_id"], json.loads(e.body)["messageId"]) for e in rows]


class Blocker:
    """Holds SQLite's write lock from another connection, so the writer thread waits."""

    def __init__(self, path):
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


# -- dedupe ----------------------------------------------------------------------------
def test_duplicates_across_appends_of_one_group_commit(log, tmp_path):
    """Two requests carrying the same message, committed in one transaction: stored once."""
    blocker = Blocker(tmp_path / "log.db")
    results: dict[str, object] = {}

    def append(name: str, events: list[NewEvent]) -> None:
        results[name] = append_sync(log, events)

    # The writer takes the first submission and waits for the lock; the next two queue
    # up behind it and are committed together in the following group.
    threads = [threading.Thread(target=append, args=("first", [ev("m0")]))]
    threads[0].start()
    wait_until(lambda: log._pending == 1 and not log._queue)
    for name in ("a", "b"):
        threads.append(threading.Thread(target=append, args=(name, [ev("same"), ev(name)])))
        threads[-1].start()
    wait_until(lambda: len(log._queue) == 2)
    blocker.release()
    for thread in threads:
        thread.join(10)
    assert results["first"].seqs == [1]
    assert {tuple(results["a"].seqs), tuple(results["b"].seqs)} == {(2, 3), (None, 4)}
    assert sorted(mid for _, mid in stored_ids(log)) == ["a", "b", "m0", "same"]


def test_dedupe_keys_are_the_keys_earlier_versions_stored():
    # Logs on disk hold these keys: the hash of a (source, messageId) must never change
    # (values from the version that hashed the joined string in one call).
    assert dedupe.dedupe_hash("src_1", "7f3c0e9a-0d6e-8b2c-9d1e-000000000001") == (
        -4671884328199927260)
    assert dedupe.dedupe_hash("sé", "ü") == 4365683245852126442
    assert dedupe.dedupe_hash("src_1", "a") != dedupe.dedupe_hash("src_1a", "")


def test_hash_collision_stores_both_and_still_dedupes_retries(tmp_path, monkeypatch):
    monkeypatch.setattr(dedupe, "dedupe_hash", lambda source_id, message_id: 42)
    log = SQLiteEventLog(tmp_path / "log.db")
    try:
        assert append_sync(log, [ev("x")]).seqs == [1]
        assert append_sync(log, [ev("y")]).seqs == [2]  # same hash, different message
        assert append_sync(log, [ev("x"), ev("y")]).seqs == [None, None]
        # Collisions inside one append: new ones stored, repeats dropped.
        assert append_sync(log, [ev("z"), ev("w"), ev("z"), ev("x"), ev("w")]).seqs == [
            3, 4, None, None, None]
        assert append_sync(log, [ev("x", "src_b")]).seqs == [5]  # other source, same hash
    finally:
        log.close()
    reopened = SQLiteEventLog(tmp_path / "log.db")  # the overflow keys are durable too
    try:
        assert append_sync(reopened, [ev(m) for m in "xyzw"]).seqs == [None] * 4
        assert append_sync(reopened, [ev("v")]).seqs == [6]
        assert sorted(m for _, m in stored_ids(reopened)) == ["v", "w", "x", "x", "y", "z"]
    finally:
        reopened.close()


def test_keys_moved_into_a_run_still_dedupe(tmp_path, monkeypatch):
    """New keys go to ``dedupe_recent`` and become a run of ``dedupe_runs`` every
    RECENT_KEYS keys; a message is a duplicate whichever table holds its key, across
    reopens (the filter rebuilt from the runs), and in the rare path too (a duplicate
    inside the same append as a key of the other table)."""
    monkeypatch.setattr(dedupe, "RECENT_KEYS", 5)
    path = tmp_path / "log.db"

    def tables() -> tuple[int, int]:
        conn = sqlite3.connect(path)
        try:
            return (conn.execute("SELECT count(*) FROM dedupe_runs").fetchone()[0],
                    conn.execute("SELECT count(*) FROM dedupe_recent").fetchone()[0])
        finally:
            conn.close()

    log = SQLiteEventLog(path)
    try:
        assert append_sync(log, [ev(f"a{i}") for i in range(4)]).seqs == [1, 2, 3, 4]
        assert tables() == (0, 4)
        assert append_sync(log, [ev("a0"), ev("b0")]).seqs == [None, 5]  # 5 keys: merged
        assert tables() == (5, 0)
        assert append_sync(log, [ev("b1")]).seqs == [6]
        assert tables() == (5, 1)
        # one key in each table, one new, one repeated within the append
        assert append_sync(log, [ev("a3"), ev("b1"), ev("c0"), ev("c0")]).seqs == [
            None, None, 7, None]
    finally:
        log.close()
    reopened = SQLiteEventLog(path)
    try:
        assert append_sync(reopened, [ev(m) for m in ("a1", "b0", "b1", "c0")]).seqs == [
            None] * 4
        assert append_sync(reopened, [ev("d0")]).seqs == [8]
        assert sorted(m for _, m in stored_ids(reopened)) == [
            "a0", "a1", "a2", "a3", "b0", "b1", "c0", "d0"]
        # found by messageId whichever table holds the key
        assert reopened._find("src_a", "a2").seq == 3  # in a run
        assert reopened._find("src_a", "d0").seq == 8  # recent
    finally:
        reopened.close()


def test_a_run_fills_over_several_commits_and_dedupe_stays_exact(tmp_path, monkeypatch):
    """A full ``dedupe_recent`` moves into its run a slice per commit (a sweep), not in
    one commit: after every append of the sweep, and after a reopen in the middle of one,
    every stored messageId is a duplicate and each key is in exactly one table."""
    monkeypatch.setattr(dedupe, "RECENT_KEYS", 12)
    monkeypatch.setattr(dedupe, "SWEEP_KEYS", 3)
    path = tmp_path / "log.db"

    def counts() -> tuple[int, int, int]:
        conn = sqlite3.connect(path)
        try:
            return tuple(conn.execute(
                "SELECT (SELECT count(*) FROM dedupe_runs), (SELECT count(*) FROM dedupe_recent),"
                " (SELECT coalesce(sum(keys), 0) FROM dedupe_run_list)").fetchone())
        finally:
            conn.close()

    sent: list[str] = []

    def send_new_then_all_again(log: SQLiteEventLog, i: int) -> tuple[int, int, int]:
        """Key ``k{i}`` is stored; every key sent so far is then a duplicate, and each
        is in exactly one table; the table counts."""
        message = f"k{i}"
        assert append_sync(log, [ev(message)]).seqs == [i + 1]
        sent.append(message)
        assert append_sync(log, [ev(m) for m in sent]).seqs == [None] * len(sent)
        runs, recent, listed = counts()
        assert runs + recent == len(sent) and runs == listed
        return runs, recent, listed

    log = SQLiteEventLog(path)
    try:
        sweeping = [send_new_then_all_again(log, i) for i in range(12)]
        # the 12th key started the sweep: its commit and the resend's moved a slice of 3
        # keys each, not all 12
        assert sweeping[-2][0] == 0 and sweeping[-1][0] == 6
    finally:
        log.close()
    reopened = SQLiteEventLog(path)  # the sweep's progress was the writer's: a new one starts
    try:
        for i in range(12, 30):
            send_new_then_all_again(reopened, i)
        assert counts()[0] > 12  # keys kept moving into runs after the reopen
        for i, message in enumerate(sent):
            assert reopened._find("src_a", message).seq == i + 1
    finally:
        reopened.close()


def test_a_sweep_slice_rolled_back_loses_no_key(tmp_path, monkeypatch):
    """A commit that fails after its sweep slice rolls the move back (the run's row in
    ``dedupe_run_list`` too); the sweep goes on from where it thought it was, and every
    key is still in ``dedupe_recent`` or in a listed run."""
    monkeypatch.setattr(dedupe, "RECENT_KEYS", 6)
    monkeypatch.setattr(dedupe, "SWEEP_KEYS", 2)
    conn = connect(tmp_path / "keys.db")
    conn.executescript(dedupe.SCHEMA)
    keys = list(range(-30, 30, 6))
    conn.executemany("INSERT INTO dedupe_recent (h, seq) VALUES (?, ?)",
                     [(h, i) for i, h in enumerate(keys)])
    conn.execute("BEGIN IMMEDIATE")
    dedupe._flush_when_full(conn, 0)  # the sweep starts: its first slice and the run's row
    conn.execute("ROLLBACK")
    while True:
        conn.execute("BEGIN IMMEDIATE")
        dedupe._flush_when_full(conn, 0)
        conn.execute("COMMIT")
        if conn.dedupe_sweep is None:  # type: ignore[attr-defined]
            break
    listed = conn.execute("SELECT h FROM dedupe_runs WHERE run IN"
                          " (SELECT run FROM dedupe_run_list)").fetchall()
    recent = conn.execute("SELECT h FROM dedupe_recent").fetchall()
    assert sorted(h for (h,) in listed + recent) == keys
    assert len(listed) == len(keys) - 2  # the first slice stayed behind, in recent
    conn.close()


def test_keys_in_many_runs_and_in_the_old_merged_table_dedupe(tmp_path, monkeypatch):
    """Many runs, a filter rebuilt larger as it fills, and a data dir whose keys were
    merged into ``dedupe`` by an earlier version: every stored messageId is a duplicate,
    found by messageId, and a new one is not."""
    monkeypatch.setattr(dedupe, "RECENT_KEYS", 3)
    monkeypatch.setattr(key_filter, "FILTER_MIN_BITS", 64)  # full after 8 keys: rebuilt
    path = tmp_path / "log.db"
    filled_then_closed(path, [f"m{j}" for j in range(20)], 4)
    with sqlite3.connect(path) as conn:  # the earliest run, as the old layout kept it
        assert conn.execute("SELECT count(*) FROM dedupe_run_list").fetchone()[0] == 5
        conn.execute("INSERT INTO dedupe SELECT h, seq FROM dedupe_runs WHERE run = 1")
        conn.execute("DELETE FROM dedupe_runs WHERE run = 1")
        conn.execute("DELETE FROM dedupe_run_list WHERE run = 1")
    reopened = SQLiteEventLog(path)
    try:
        assert append_sync(reopened, [ev(f"m{j}") for j in range(20)]).seqs == [None] * 20
        for j in range(20):
            assert append_sync(reopened, [ev(f"m{j}")]).seqs == [None]  # the rare path
            assert reopened._find("src_a", f"m{j}").seq == j + 1
        assert append_sync(reopened, [ev("new"), ev("m3")]).seqs == [21, None]
    finally:
        reopened.close()


# -- seq ---------------------------------------------------------------------------------
def test_seq_is_monotonic_and_gapless_under_concurrent_appends(log):
    seqs: list[int] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(40):
            result = append_sync(log, [ev(f"t{n}-{i}-{k}") for k in range(3)])
            assert result.seqs == sorted(result.seqs)
            with lock:
                seqs.extend(result.seqs)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(seqs) == list(range(1, 6 * 40 * 3 + 1))
    assert log.last_seq() == 720
    rows = log.read_sync(0, 10_000)
    assert [e.seq for e in rows] == list(range(1, 721))
    assert [e.seq for e in log.read_sync(700, 5)] == [701, 702, 703, 704, 705]


def test_close_finishes_queued_commits(tmp_path):
    log = SQLiteEventLog(tmp_path / "log.db")
    blocker = Blocker(tmp_path / "log.db")
    results = []
    thread = threading.Thread(target=lambda: results.append(append_sync(log, [ev("m1")])))
    thread.start()
    wait_until(lambda: log._pending == 1)
    closer = threading.Thread(target=log.close)
    closer.start()
    time.sleep(0.1)
    blocker.release()
    closer.join(10)
    thread.join(10)
    assert results[0].seqs == [1]
    with pytest.raises(Overloaded):  # a closed log refuses, it does not hang
        append_sync(log, [ev("m2")])
    reopened = SQLiteEventLog(tmp_path / "log.db")
    assert reopened.last_seq() == 1
    reopened.close()


# -- back-pressure -----------------------------------------------------------------------
def test_full_queue_raises_overloaded(tmp_path):
    log = SQLiteEventLog(tmp_path / "log.db", max_pending=10)
    blocker = Blocker(tmp_path / "log.db")
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(
        append_sync(log, [ev(f"a{i}") for i in range(6)])))]
    threads[0].start()
    wait_until(lambda: log._pending == 6)
    with pytest.raises(Overloaded) as refused:
        append_sync(log, [ev(f"b{i}") for i in range(5)])  # 6 + 5 > 10
    assert refused.value.status == 503 and refused.value.retry_after > 0
    threads.append(threading.Thread(target=lambda: results.append(
        append_sync(log, [ev(f"c{i}") for i in range(4)]))))  # 6 + 4 fits
    threads[1].start()
    wait_until(lambda: log._pending == 10)
    blocker.release()
    for t in threads:
        t.join(10)
    assert sorted(r.stored for r in results) == [4, 6]
    assert sorted(m for _, m in stored_ids(log)) == sorted(
        [f"a{i}" for i in range(6)] + [f"c{i}" for i in range(4)])
    # An idle log takes a batch bigger than the limit rather than refusing it forever.
    assert append_sync(log, [ev(f"d{i}") for i in range(25)]).stored == 25
    log.close()


def test_writer_thread_survives_a_failed_commit(tmp_path, monkeypatch):
    """A commit that fails fails only its own requests; the writer goes on with the next."""
    log = SQLiteEventLog(tmp_path / "log.db")
    real_commit = log._commit
    calls = []

    def failing_once(conn, subs):
        calls.append(len(subs))
        if len(calls) == 1:
            raise sqlite3.OperationalError("disk I/O error")
        return real_commit(conn, subs)

    monkeypatch.setattr(log, "_commit", failing_once)
    event = NewEvent("s", "track", "m1", None, None, None, 0, 0, b'{"messageId":"m1"}')
    try:
        with pytest.raises(sqlite3.OperationalError):
            append_sync(log, [event])
        assert append_sync(log, [event]).seqs == [1]  # nothing half-written by the failure
        assert log._pending == 0
    finally:
        log.close()


def test_commits_are_reported(tmp_path):
    commits: list[tuple[int, float]] = []
    log = SQLiteEventLog(tmp_path / "log.db", on_commit=lambda n, s: commits.append((n, s)))
    try:
        append_sync(log, [ev("m1"), ev("m2")])
        append_sync(log, [ev("m2")])
    finally:
        log.close()
    assert [n for n, _ in commits] == [2, 1] and all(s >= 0 for _, s in commits)
