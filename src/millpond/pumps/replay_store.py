"""Replays in ``state.db``: what was asked, where it stands, and what it did.

Why the cursor, the counters and the dead letters are written in one transaction (as
:mod:`millpond.pumps.progress` does for live delivery): after a crash a replay resumes
strictly after its saved (ts, seq) cursor, and the counters and the destination's
dead-letter queue must say exactly what happened to the events below that cursor, no
more and no less, so nothing is counted or parked twice.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from millpond.errors import NotFound
from millpond.pumps.progress import _ADD_DEAD
from millpond.state import StateDB

SCHEMA = """
CREATE TABLE IF NOT EXISTS replays (
    id TEXT PRIMARY KEY,
    destination_id TEXT NOT NULL,
    state TEXT NOT NULL,
    plan TEXT NOT NULL,
    cursor_ts INTEGER,
    cursor_seq INTEGER,
    scanned INTEGER NOT NULL DEFAULT 0,
    counts TEXT NOT NULL DEFAULT '[]',
    error TEXT,
    report TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS replays_by_destination ON replays(destination_id, state);
"""

#: States in which a replay still owns its destination's replay slot.
ACTIVE = ("planned", "running", "paused")
FINISHED = ("completed", "cancelled", "failed")


@dataclass(slots=True)
class Replay:
    """One stored replay. ``plan`` is the resolved request (see ``replay_plan.Plan``)."""

    id: str
    destination_id: str
    state: str
    plan: dict
    cursor: tuple[int, int] | None = None
    scanned: int = 0
    counts: Counter = field(default_factory=Counter)
    error: str | None = None
    report: dict | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    finished_at: float | None = None


def _counts(text: str) -> Counter:
    return Counter({(a, o, r): n for a, o, r, n in json.loads(text)})


def _dump_counts(counts: Counter) -> str:
    return json.dumps([[*k, n] for k, n in sorted(counts.items()) if n])


class ReplayStore:
    """CRUD and checkpoints for replays; every method is one small transaction."""

    def __init__(self, db: StateDB):
        self._db = db
        db.executescript(SCHEMA)

    @staticmethod
    def _row(row) -> Replay:
        cursor = None if row["cursor_ts"] is None else (row["cursor_ts"], row["cursor_seq"])
        return Replay(row["id"], row["destination_id"], row["state"], json.loads(row["plan"]),
                      cursor, row["scanned"], _counts(row["counts"]), row["error"],
                      None if row["report"] is None else json.loads(row["report"]),
                      row["created_at"], row["updated_at"], row["finished_at"])

    def create(self, destination_id: str, plan: dict, state: str = "running") -> Replay:
        now = time.time()
        replay = Replay("rpl_" + secrets.token_hex(6), destination_id, state, plan,
                        created_at=now, updated_at=now)
        self._db.conn().execute(
            "INSERT INTO replays (id, destination_id, state, plan, created_at, updated_at)"
            " VALUES (?,?,?,?,?,?)",
            (replay.id, destination_id, state, json.dumps(plan), now, now))
        return replay

    def get(self, replay_id: str) -> Replay:
        row = self._db.conn().execute("SELECT * FROM replays WHERE id = ?",
                                      (replay_id,)).fetchone()
        if row is None:
            raise NotFound(f"no replay {replay_id!r}", field="id")
        return self._row(row)

    def list(self, destination_id: str | None = None, states: Iterable[str] = ()) -> list[Replay]:
        sql, args = "SELECT * FROM replays WHERE 1=1", []
        if destination_id is not None:
            sql += " AND destination_id = ?"
            args.append(destination_id)
        states = tuple(states)
        if states:
            sql += f" AND state IN ({','.join('?' * len(states))})"
            args.extend(states)
        rows = self._db.conn().execute(sql + " ORDER BY created_at", args)
        return [self._row(r) for r in rows]

    def active_for(self, destination_id: str) -> Replay | None:
        found = self.list(destination_id, ACTIVE)
        return found[0] if found else None

    def set_state(self, replay_id: str, state: str, *, error: str | None = None,
                  report: dict | None = None) -> None:
        now = time.time()
        self._db.conn().execute(
            "UPDATE replays SET state = ?, error = COALESCE(?, error),"
            " report = COALESCE(?, report), updated_at = ?,"
            " finished_at = CASE WHEN ? THEN ? ELSE finished_at END WHERE id = ?",
            (state, error, None if report is None else json.dumps(report), now,
             state in FINISHED, now, replay_id))

    def checkpoint(self, replay: Replay, cursor: tuple[int, int] | None, scanned: int,
                   counts: Counter, dead: list[dict]) -> None:
        """Atomically: move the cursor to ``cursor`` (the (ts, seq) of the last finished
        event), add ``scanned`` and the counter deltas, park new dead letters in the
        destination's queue. ``replay.counts``/``scanned``/``cursor`` follow the write.

        Why it is cheap (it runs after every batch, in a worker thread, while the sender
        waits): the totals start from ``replay`` (its runner is the row's only writer
        while it runs), so without dead letters this is one UPDATE, one implicit
        transaction, and each statement costs the worker a wait for the GIL beside a busy
        event loop; and it commits without an fsync (``StateDB.relaxed_conn``): a process
        crash loses nothing, a power loss at worst takes the replay back a few batches,
        counters and dead letters with it, and it resends them."""
        conn = self._db.relaxed_conn()
        now = time.time()
        total = Counter(replay.counts)
        total.update(counts)
        params: list = [scanned, _dump_counts(total), now]
        sql = "UPDATE replays SET scanned = scanned + ?, counts = ?, updated_at = ?"
        if cursor is not None:
            sql += ", cursor_ts = ?, cursor_seq = ?"
            params += [cursor[0], cursor[1]]
        sql += " WHERE id = ?"
        params.append(replay.id)
        if not dead:
            conn.execute(sql, params)
        else:
            rows = [(replay.destination_id, d["seq"], d.get("message_id"), d["action"],
                     d["reason"], d.get("status"), d.get("response"),
                     None if d.get("payload") is None else json.dumps(d["payload"]),
                     d.get("created_at", now)) for d in dead]
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(sql, params)
                conn.executemany(_ADD_DEAD, rows)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        replay.counts = total
        replay.scanned += scanned
        if cursor is not None:
            replay.cursor = cursor

    def forget(self, destination_id: str) -> None:
        self._db.conn().execute("DELETE FROM replays WHERE destination_id = ?",
                                (destination_id,))
