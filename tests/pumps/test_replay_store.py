"""Replay checkpoints in a real state.db: cursor, scanned, counters and dead letters move
together, and a write that fails moves none of them."""

from __future__ import annotations

import sqlite3
from collections import Counter

import pytest

from millpond.pumps.progress import ProgressStore
from millpond.pumps.replay_store import ReplayStore
from millpond.state import StateDB

SENT = ("a", "sent", "")


@pytest.fixture
def store(tmp_path):
    state = StateDB(tmp_path / "state.db")
    ProgressStore(state)  # the dead-letter queue the replays share
    yield ReplayStore(state)
    state.close()


def dead(seq: int) -> dict:
    return {"seq": seq, "message_id": f"m{seq}", "action": "a", "reason": "invalid payload: x",
            "payload": {"id": f"m{seq}"}}


def test_checkpoints_accumulate_and_survive_a_reopen(store, tmp_path):
    replay = store.create("d", {"rate": 10.0})
    store.checkpoint(replay, (100, 7), 3, Counter({SENT: 3}), [])
    store.checkpoint(replay, None, 2, Counter({SENT: 1, ("a", "dead_lettered", "invalid"): 1}),
                     [dead(9)])
    assert (replay.cursor, replay.scanned) == ((100, 7), 5)
    again = ReplayStore(StateDB(tmp_path / "state.db")).get(replay.id)
    assert (again.cursor, again.scanned) == ((100, 7), 5)
    assert again.counts == Counter({SENT: 4, ("a", "dead_lettered", "invalid"): 1}) \
        == replay.counts
    rows = store._db.conn().execute(
        "SELECT destination_id, seq, payload FROM dead_letters").fetchall()
    assert [tuple(r) for r in rows] == [("d", 9, '{"id": "m9"}')]


def test_a_failed_checkpoint_changes_nothing(store):
    replay = store.create("d", {"rate": 10.0})
    store.checkpoint(replay, (100, 7), 3, Counter({SENT: 3}), [])
    broken = {**dead(9), "action": None}  # NOT NULL: the insert fails after the update
    with pytest.raises(sqlite3.IntegrityError):
        store.checkpoint(replay, (200, 8), 4, Counter({SENT: 4}), [broken])
    assert (replay.cursor, replay.scanned, replay.counts) == ((100, 7), 3, Counter({SENT: 3}))
    stored = store.get(replay.id)
    assert (stored.cursor, stored.scanned, stored.counts) == ((100, 7), 3, Counter({SENT: 3}))
    assert store._db.conn().execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0] == 0
