"""The SQLite profile store's own behaviour: its file survives a reopen, WAL lets readers
and a second store share it, a failing batch rolls back. The rules are tested in
``tests/profiles``, what every backend promises in ``tests/storage/contract``."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from millpond.storage.sqlite.profiles import SQLiteProfileStore as ProfileStore
from tests.profiles.profile_events import alias, identify

T0 = 1714564800  # 2024-05-01T12:00:00Z


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "profiles.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[ProfileStore]:
    ps = ProfileStore(db_path)
    yield ps
    ps.close()


def test_profiles_and_checkpoint_survive_reopen(db_path: Path) -> None:
    with ProfileStore(db_path) as ps:
        assert ps.checkpoint() == 0
        ps.apply_many(
            [identify("m1", "u1", "a1", traits={"plan": "pro"}), alias("m2", "a1", "u2")],
            checkpoint=2,
        )
        before = ps.get("u1")
    with ProfileStore(db_path) as ps:
        assert ps.checkpoint() == 2
        assert ps.get("a1") == before
        ps.set_checkpoint(41)
        # Cluster numbers keep counting after reopen: a new profile must not collide.
        ps.apply_many([identify("m3", "u3", traits={"plan": "free"})])
        assert ps.get("u3")["traits"] == {"plan": "free"}  # type: ignore[index]
        assert ps.get("u1") == before
    with ProfileStore(db_path) as ps:
        assert ps.checkpoint() == 41


def test_a_failing_batch_changes_nothing(store: ProfileStore) -> None:
    store.apply_many([identify("m0", "u1", traits={"plan": "free"})], checkpoint=1)

    def events() -> Any:
        yield identify("m1", "u1", traits={"plan": "pro", "_timestamp": T0 + 99})
        yield alias("m2", "u1", "u2")
        raise RuntimeError("log read failed")

    with pytest.raises(RuntimeError):
        store.apply_many(events(), checkpoint=3)
    assert store.get("u1")["traits"] == {"plan": "free"}  # type: ignore[index]
    assert store.get("u2") is None
    assert store.checkpoint() == 1


def test_wal_mode_and_a_foreign_connection(db_path: Path) -> None:
    with ProfileStore(db_path) as ps:
        other = sqlite3.connect(db_path)
        try:
            assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            other.execute("BEGIN")
            other.execute("SELECT count(*) FROM identities").fetchone()  # hold a read snapshot
            ps.apply_many([identify("m1", "u1")])  # a reader does not block the writer
            other.execute("COMMIT")
            assert other.execute("SELECT count(*) FROM identities").fetchone()[0] == 1
        finally:
            other.close()


def test_reads_from_another_thread(store: ProfileStore) -> None:
    store.apply_many([identify("m1", "u1", traits={"a": 1})])
    seen: list[Any] = []
    worker = threading.Thread(target=lambda: seen.append(store.get("u1")))
    worker.start()
    worker.join()
    assert seen[0]["traits"] == {"a": 1}


def test_close_twice_is_fine(db_path: Path) -> None:
    ps = ProfileStore(db_path)
    ps.close()
    ps.close()


def test_two_stores_on_one_file_share_the_profiles(db_path: Path) -> None:
    # E.g. the server's follower and a CLI working on the data dir directly.
    with ProfileStore(db_path) as one, ProfileStore(db_path) as two:
        one.apply_many([identify("m1", "u1", traits={"a": 1})])
        two.apply_many([identify("m2", "u2", traits={"b": 2})])  # must not reuse u1's cluster
        one.apply_many([identify("m3", "u3", traits={"c": 3})])
        assert two.get("u1")["traits"] == {"a": 1}  # type: ignore[index]
        assert one.get("u2")["traits"] == {"b": 2}  # type: ignore[index]
        assert two.get("u3")["traits"] == {"c": 3}  # type: ignore[index]
        two.apply_many([alias("m4", "u1", "u2")])
        assert one.get("u1")["traits"] == {"a": 1, "b": 2}  # type: ignore[index]


def test_a_store_from_before_the_people_search_is_indexed_when_opened(db_path: Path) -> None:
    with ProfileStore(db_path) as store:
        store.apply_many([identify("m1", "u1", traits={"email": "ada@example.com"})])
    with sqlite3.connect(db_path) as conn:  # as a store written by an older millpond
        conn.execute("DROP TABLE search_terms")
        conn.execute("DELETE FROM meta WHERE key = 'search_terms'")
    with ProfileStore(db_path) as store:
        assert [p["user_id"] for p in store.search("ada@").people] == ["u1"]


def test_many_profiles_are_read_in_a_few_queries(store: ProfileStore) -> None:
    """A build resolves every person: ``get_many`` reads their profiles a few queries
    per 500, not four per profile."""
    store.apply_many([identify(f"m{n}", f"u{n}", traits={"n": n}) for n in range(1200)])
    statements: list[str] = []
    store._read.set_trace_callback(statements.append)
    try:
        found = store.get_many([f"u{n}" for n in range(1200)])
    finally:
        store._read.set_trace_callback(None)
    assert [found[f"u{n}"]["traits"]["n"] for n in range(1200)] == list(range(1200))
    assert len(statements) < 30, len(statements)
