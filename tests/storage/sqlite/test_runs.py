"""The SQLite run store on a data dir written before outcome rows had a retention."""

from __future__ import annotations

import sqlite3
import time

from millpond.storage import outcome_rows
from millpond.storage.sqlite.connection import StateDB
from millpond.storage.sqlite.runs import SQLiteRunStore

OLD_SCHEMA = """
CREATE TABLE outcome_rows (id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, key TEXT NOT NULL,
                           seqs BLOB NOT NULL);
"""


def test_outcome_rows_of_an_older_data_dir_are_kept_a_full_window(tmp_path):
    path = tmp_path / "state.db"
    old = sqlite3.connect(path)
    old.executescript(OLD_SCHEMA)
    old.execute("INSERT INTO outcome_rows (run_id, key, seqs) VALUES (?,?,?)",
                ("r1", '["a","sent",""]', outcome_rows.pack([1, 2, 3])))
    old.commit()
    old.close()
    opened = time.time()
    runs = SQLiteRunStore(StateDB(path))
    # they count as written when the store first opened: not pruned before that
    assert runs.prune_outcomes(opened - 1) == 0
    assert runs.outcome_events(["r1"], [("a", "sent", "")]).seqs == [3, 2, 1]
    assert runs.prune_outcomes(time.time() + 1) == 1
    assert runs.outcome_events(["r1"], [("a", "sent", "")]).seqs == []
