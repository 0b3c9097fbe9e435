"""The dedupe filter of the SQLite log's runs, built off the writer's thread: no commit
waits for it, and dedupe stays exact before, during and after its build."""

from __future__ import annotations

import random
import sqlite3
import threading

from millpond.storage.sqlite import dedupe, key_filter
from millpond.storage.sqlite.log import SQLiteEventLog

from ..helpers import ev, wait_until
from .log_helpers import append_sync, filled_then_closed


def test_key_filter_never_misses_a_key_it_was_given():
    """No false "absent" (dedupe would store a duplicate); few false "present"."""
    rng = random.Random(3)
    given = [rng.getrandbits(64) - (1 << 63) for _ in range(20_000)]
    made = key_filter.KeyFilter.sized_for(len(given))
    made.add(given)
    assert made.hits(given) == given
    others = [rng.getrandbits(64) - (1 << 63) for _ in range(20_000)]
    assert len(made.hits(others)) < 20_000 * 0.02


def run_keys(path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM dedupe_runs").fetchone()[0]


def test_commits_go_on_while_the_filter_is_built_and_dedupe_stays_exact(tmp_path,
                                                                         monkeypatch):
    """A reopened log's writer commits before its filter is built (held here, its
    snapshot already taken): a message whose key is in a run is still a duplicate (looked
    up), keys moved into a new run meanwhile are in the filter once it is in, and a
    message sent again after that is still a duplicate."""
    monkeypatch.setattr(dedupe, "RECENT_KEYS", 4)
    monkeypatch.setattr(dedupe, "SWEEP_KEYS", 100)
    path = tmp_path / "log.db"
    filled_then_closed(path, [f"old{j}" for j in range(12)], 3)
    assert run_keys(path) >= 8  # most keys are in runs: only the filter spares lookups

    snapshot_taken, release = threading.Event(), threading.Event()
    sized_for = key_filter.KeyFilter.sized_for

    def held(keys: int) -> key_filter.KeyFilter:  # called after the count: in the snapshot
        snapshot_taken.set()
        release.wait(30)
        return sized_for(keys)

    monkeypatch.setattr(key_filter.KeyFilter, "sized_for", staticmethod(held))
    reopened = SQLiteEventLog(path)
    try:
        assert snapshot_taken.wait(30)
        assert append_sync(reopened, [ev("old0"), ev("old7")]).seqs == [None, None]
        moved_before = run_keys(path)
        new = [ev(f"new{j}") for j in range(10)]
        for i in range(0, 10, 2):
            assert append_sync(reopened, new[i:i + 2]).seqs[0] is not None
        assert run_keys(path) > moved_before  # keys moved into a run during the build
        release.set()
        wait_until(lambda: not any(t.name == "millpond-dedupe-filter" and t.is_alive()
                                   for t in threading.enumerate()))
        # The next commit takes the filter in. Each message alone: a commit whose keys
        # are all new to dedupe_recent is decided by the filter for the runs.
        for message in new + [ev(f"old{j}") for j in range(12)]:
            assert append_sync(reopened, [message]).seqs == [None], message.message_id
        assert append_sync(reopened, [ev("brand-new")]).seqs == [23]
    finally:
        release.set()
        reopened.close()
