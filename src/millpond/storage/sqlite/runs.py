"""Delivery runs and dead letters in ``state.db``.

Why a run's cursor, counters and new dead letters are written in one transaction: after
a crash a run resumes strictly after its saved cursor, and the counters and the
destination's dead-letter queue must say exactly what happened to the events below that
cursor, no more and no less, so nothing is counted or parked twice.

Why a checkpoint without dead letters is one ``UPDATE`` (counters included): it runs
after every batch, in a worker thread, while the sender waits, and each statement costs
that thread a wait for the GIL beside a busy event loop. The counters are a JSON object
in the run's row, and SQLite adds the deltas to it itself (``json_each`` of both, summed
by key), so no read of the old totals is needed.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

from millpond.errors import BadRequest, NotFound
from millpond.storage import outcome_rows
from millpond.storage.columns import cursor_columns, dead_values
from millpond.storage.models import (
    CountKey,
    DeadLetter,
    DeadLetterState,
    OutcomePage,
    Run,
    RunKind,
    RunState,
    WindowCursor,
)
from millpond.storage.sqlite.connection import StateDB, immediate

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    destination_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    spec TEXT NOT NULL,
    cursor_ts INTEGER,
    cursor_seq INTEGER,
    counts TEXT NOT NULL DEFAULT '{}',
    scanned INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    report TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS runs_by_destination ON runs(destination_id, kind, state);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    destination_id TEXT NOT NULL,
    run_id TEXT NOT NULL DEFAULT '',
    seq INTEGER NOT NULL,
    message_id TEXT,
    action TEXT NOT NULL,
    reason TEXT NOT NULL,
    status INTEGER,
    response TEXT,
    payload TEXT,
    created_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'dead',
    redriven_at REAL
);
CREATE INDEX IF NOT EXISTS dead_letters_by_destination ON dead_letters(destination_id, state, id);
CREATE TABLE IF NOT EXISTS outcome_rows (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    seqs BLOB NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outcome_rows_by_key ON outcome_rows(run_id, key, id);
"""

FINISHED = (RunState.COMPLETED, RunState.CANCELLED, RunState.FAILED)

#: Adds a JSON object of counter deltas (parameter) to a run's counters.
_ADD_COUNTS = (
    "counts = (SELECT json_group_object(k, n) FROM (SELECT key AS k, SUM(value) AS n FROM"
    " (SELECT key, value FROM json_each(runs.counts) UNION ALL SELECT key, value"
    " FROM json_each(?)) GROUP BY key))"
)
_ADD_DEAD = (
    "INSERT INTO dead_letters (destination_id, run_id, seq, message_id, action, reason,"
    " status, response, payload, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)"
)
_key_encode = msgspec.json.Encoder().encode
_key_decode = msgspec.json.Decoder(tuple[str, str, str]).decode


def _dump_key(key: CountKey) -> str:
    return _key_encode(list(key)).decode()


def _dump_counts(counts: Mapping[CountKey, int]) -> str:
    return json.dumps({_dump_key(k): n for k, n in counts.items() if n})


def _load_counts(text: str) -> dict[CountKey, int]:
    return {_key_decode(k): n for k, n in json.loads(text).items() if n}


def _run(row: sqlite3.Row) -> Run:
    if row["cursor_seq"] is None:
        cursor: int | WindowCursor | None = None
    elif row["cursor_ts"] is None:
        cursor = row["cursor_seq"]
    else:
        cursor = WindowCursor(row["cursor_ts"], row["cursor_seq"])
    return Run(row["id"], row["destination_id"], RunKind(row["kind"]), RunState(row["state"]),
               json.loads(row["spec"]), cursor, _load_counts(row["counts"]), row["scanned"],
               row["error"], None if row["report"] is None else json.loads(row["report"]),
               row["created_at"], row["updated_at"], row["finished_at"])


def _dead_letter(row: sqlite3.Row) -> DeadLetter:
    return DeadLetter(row["destination_id"], row["run_id"], row["seq"], row["message_id"],
                      row["action"], row["reason"], row["status"], row["response"],
                      None if row["payload"] is None else json.loads(row["payload"]),
                      row["created_at"], DeadLetterState(row["state"]), row["redriven_at"],
                      row["id"])


class SQLiteRunStore:
    """:class:`~millpond.storage.contracts.RunStore`; see the module docstring."""

    def __init__(self, db: StateDB):
        self._db = db
        db.executescript(SCHEMA)
        if "run_id" not in db.columns("dead_letters"):  # a data dir from before runs
            db.conn().execute("ALTER TABLE dead_letters ADD COLUMN run_id TEXT NOT NULL"
                              " DEFAULT ''")
        if "at" not in db.columns("outcome_rows"):  # a data dir from before their retention
            # The rows already there count as written now (a constant default: SQLite
            # adds the column without rewriting the table), so they are kept a full
            # retention window, not pruned at once.
            db.conn().execute("ALTER TABLE outcome_rows ADD COLUMN at REAL NOT NULL"
                              f" DEFAULT {time.time():.3f}")

    # -- runs ------------------------------------------------------------------------------
    def create(self, run: Run) -> Run:
        ts, seq = (None, None) if run.cursor is None else cursor_columns(run.cursor)
        now = time.time()
        run.created_at = run.created_at or now
        run.updated_at = run.updated_at or run.created_at
        try:
            self._db.conn().execute(
                "INSERT INTO runs (id, destination_id, kind, state, spec, cursor_ts, cursor_seq,"
                " counts, scanned, error, report, created_at, updated_at, finished_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (run.id, run.destination_id, str(run.kind), str(run.state),
                 json.dumps(run.spec), ts, seq, _dump_counts(run.counts), run.scanned,
                 run.error, None if run.report is None else json.dumps(run.report),
                 run.created_at, run.updated_at, run.finished_at))
        except sqlite3.IntegrityError:
            raise BadRequest(f"a run with id {run.id!r} already exists", field="id") from None
        return run

    def get(self, run_id: str) -> Run:
        row = self._db.conn().execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise NotFound(f"no run {run_id!r}", field="id")
        return _run(row)

    def list(self, destination_id: str | None = None, *, kinds: Iterable[RunKind] = (),
             states: Iterable[RunState] = ()) -> list[Run]:
        sql = "SELECT * FROM runs WHERE 1=1"
        args: list[str] = []
        if destination_id is not None:
            sql += " AND destination_id = ?"
            args.append(destination_id)
        for column, values in (("kind", [str(k) for k in kinds]),
                               ("state", [str(s) for s in states])):
            if values:
                sql += f" AND {column} IN ({','.join('?' * len(values))})"
                args.extend(values)
        rows = self._db.conn().execute(sql + " ORDER BY created_at, rowid", args)
        return [_run(r) for r in rows]

    def set_state(self, run_id: str, state: RunState, *, error: str | None = None,
                  report: Mapping[str, Any] | None = None) -> Run:
        now = time.time()
        cur = self._db.conn().execute(
            "UPDATE runs SET state = ?, error = COALESCE(?, error),"
            " report = COALESCE(?, report), updated_at = ?,"
            " finished_at = CASE WHEN ? THEN ? ELSE finished_at END WHERE id = ?",
            (str(state), error, None if report is None else json.dumps(report), now,
             state in FINISHED, now, run_id))
        if cur.rowcount == 0:
            raise NotFound(f"no run {run_id!r}", field="id")
        return self.get(run_id)

    def checkpoint(self, run_id: str, *, cursor: int | WindowCursor | None = None,
                   counts: Mapping[CountKey, int] | None = None,
                   dead: Sequence[DeadLetter] = (), scanned: int = 0,
                   redriven: Sequence[int] = (), durable: bool = True,
                   outcomes: Mapping[CountKey, Sequence[int]] | None = None) -> None:
        conn = self._db.conn() if durable else self._db.relaxed()
        now = time.time()
        sets: list[str] = ["updated_at = ?"]
        params: list[float | int | str | None] = [now]
        if scanned:
            sets.append("scanned = scanned + ?")
            params.append(scanned)
        if cursor is not None:
            sets.append("cursor_ts = ?, cursor_seq = ?")
            params.extend(cursor_columns(cursor))
        if counts and any(counts.values()):
            sets.append(_ADD_COUNTS)
            params.append(_dump_counts(counts))
        update = f"UPDATE runs SET {', '.join(sets)} WHERE id = ?"
        params.append(run_id)
        packed = [(run_id, _dump_key(k), blob, now)
                  for k, blob in outcome_rows.pack_all(outcomes)]
        if not dead and not redriven and not packed:
            if conn.execute(update, params).rowcount == 0:
                raise NotFound(f"no run {run_id!r}", field="id")
            return
        rows = [dead_values(d, now) for d in dead]
        with immediate(conn):
            if conn.execute(update, params).rowcount == 0:
                raise NotFound(f"no run {run_id!r}", field="id")
            if packed:
                conn.executemany("INSERT INTO outcome_rows (run_id, key, seqs, at)"
                                 " VALUES (?,?,?,?)", packed)
            if rows:
                conn.executemany(_ADD_DEAD, rows)
            if redriven:
                conn.executemany("UPDATE dead_letters SET state = 'redriven', redriven_at = ?"
                                 " WHERE id = ?", [(now, i) for i in redriven])

    def outcome_events(self, run_ids: Sequence[str], keys: Sequence[CountKey], *,
                       cursor: str | None = None, limit: int = 50) -> OutcomePage:
        at = outcome_rows.parse_cursor(cursor)
        top = at[0] if at is not None else -1
        conn = self._db.conn()

        def rows(run_id: str, key: CountKey):
            # One index range per (run, key), newest first; read lazily by the merge.
            sql = "SELECT id, seqs FROM outcome_rows WHERE run_id = ? AND key = ?"
            args: list[str | int] = [run_id, _dump_key(key)]
            if top >= 0:
                sql += " AND id <= ?"
                args.append(top)
            return iter(conn.execute(sql + " ORDER BY id DESC", args))

        return outcome_rows.page([rows(r, k) for r in dict.fromkeys(run_ids)
                                  for k in dict.fromkeys(keys)], at, limit)

    def prune_outcomes(self, before: float, limit: int = 10_000) -> int:
        conn = self._db.conn()
        oldest = conn.execute("SELECT id, at FROM outcome_rows ORDER BY id LIMIT ?", (limit,))
        last = outcome_rows.last_expired(oldest, before)
        if last is None:
            return 0
        return conn.execute("DELETE FROM outcome_rows WHERE id <= ?", (last,)).rowcount

    # -- dead letters ----------------------------------------------------------------------
    def dead_letters(self, destination_id: str, *,
                     state: DeadLetterState | None = DeadLetterState.DEAD,
                     after_id: int = 0, limit: int = 100) -> list[DeadLetter]:
        sql = "SELECT * FROM dead_letters WHERE destination_id = ? AND id > ?"
        args: list[str | int] = [destination_id, after_id]
        if state is not None:
            sql += " AND state = ?"
            args.append(str(state))
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)
        return [_dead_letter(r) for r in self._db.conn().execute(sql, args)]

    def dead_letter(self, dead_letter_id: int) -> DeadLetter:
        row = self._db.conn().execute("SELECT * FROM dead_letters WHERE id = ?",
                                      (dead_letter_id,)).fetchone()
        if row is None:
            raise NotFound(f"no dead letter {dead_letter_id}", field="id")
        return _dead_letter(row)

    def count_dead_letters(self, destination_id: str,
                           state: DeadLetterState = DeadLetterState.DEAD) -> int:
        return self._db.conn().execute(
            "SELECT COUNT(*) FROM dead_letters WHERE destination_id = ? AND state = ?",
            (destination_id, str(state))).fetchone()[0]

    def claim_dead_letters(self, destination_id: str,
                           ids: Sequence[int] | None) -> list[DeadLetter]:
        conn = self._db.conn()
        with immediate(conn):
            if ids is None:
                rows = conn.execute("SELECT * FROM dead_letters WHERE destination_id = ? AND"
                                    " state = 'dead' ORDER BY seq, id",
                                    (destination_id,)).fetchall()
            else:
                marks = ",".join("?" * len(ids))
                rows = conn.execute(f"SELECT * FROM dead_letters WHERE id IN ({marks})"
                                    " ORDER BY seq, id", list(ids)).fetchall() if ids else []
                found = {r["id"]: r for r in rows}
                bad = [i for i in ids if i not in found
                       or found[i]["destination_id"] != destination_id]
                if bad:
                    raise NotFound(f"no dead letter {', '.join(map(str, bad))} for this "
                                   "destination", field="ids")
                busy = [i for i in ids if found[i]["state"] != "dead"]
                if busy:
                    raise BadRequest(f"dead letter {', '.join(map(str, busy))} is not in "
                                     "state dead (already redriven or being redriven)",
                                     field="ids")
            conn.executemany("UPDATE dead_letters SET state = 'redriving' WHERE id = ?",
                             [(r["id"],) for r in rows])
        claimed = [_dead_letter(r) for r in rows]
        for letter in claimed:
            letter.state = DeadLetterState.REDRIVING
        return claimed

    def release_dead_letters(self, ids: Sequence[int]) -> None:
        conn = self._db.conn()
        with immediate(conn):
            conn.executemany(
                "UPDATE dead_letters SET state = 'dead' WHERE id = ? AND state = 'redriving'",
                [(i,) for i in ids])

    def recover_dead_letters(self) -> int:
        return self._db.conn().execute(
            "UPDATE dead_letters SET state = 'dead' WHERE state = 'redriving'").rowcount
