"""Delivery runs and dead letters on PostgreSQL.

The same promise as on the embedded store (see ``storage/sqlite/runs.py``): a checkpoint
moves the cursor, adds the counters, parks the new dead letters and records the events
behind each count (packed rows, shared with the embedded store: ``storage/outcome_rows.py``)
in one transaction, so after any crash they agree. The counters are a ``jsonb`` object
in the run's row, added to by the server (``jsonb_each_text`` of both, summed by key),
so concurrent checkpoints of a run each count: the ``UPDATE`` takes the row lock and
re-reads the row it adds to. ``durable=False`` costs nothing less here: PostgreSQL commits
are cheap next to a network round trip, and a relaxed ``synchronous_commit`` would need a
connection of its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import msgspec
import psycopg
from psycopg import sql

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
from millpond.storage.postgres.connection import PgState

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    ord BIGSERIAL,
    id TEXT PRIMARY KEY,
    destination_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    spec TEXT NOT NULL,
    cursor_ts BIGINT,
    cursor_seq BIGINT,
    counts JSONB NOT NULL DEFAULT '{}',
    scanned BIGINT NOT NULL DEFAULT 0,
    error TEXT,
    report TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS runs_by_destination ON runs(destination_id, kind, state);
CREATE TABLE IF NOT EXISTS dead_letters (
    id BIGSERIAL PRIMARY KEY,
    destination_id TEXT NOT NULL,
    run_id TEXT NOT NULL DEFAULT '',
    seq BIGINT NOT NULL,
    message_id TEXT,
    action TEXT NOT NULL,
    reason TEXT NOT NULL,
    status INTEGER,
    response TEXT,
    payload TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    state TEXT NOT NULL DEFAULT 'dead',
    redriven_at DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS dead_letters_by_destination
    ON dead_letters(destination_id, state, id);
CREATE TABLE IF NOT EXISTS outcome_rows (
    id BIGSERIAL PRIMARY KEY,
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    seqs BYTEA NOT NULL,
    at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS outcome_rows_by_key ON outcome_rows(run_id, key, id);
"""

FINISHED = (RunState.COMPLETED, RunState.CANCELLED, RunState.FAILED)

#: Adds a JSON object of counter deltas (parameter) to a run's counters.
_ADD_COUNTS = (
    "counts = (SELECT COALESCE(jsonb_object_agg(k, n), '{}'::jsonb) FROM (SELECT key AS k,"
    " SUM(value::bigint) AS n FROM (SELECT key, value FROM jsonb_each_text(runs.counts)"
    " UNION ALL SELECT key, value FROM jsonb_each_text(%s::jsonb)) AS both_ GROUP BY key)"
    " AS sums)"
)
_ADD_DEAD = (
    "INSERT INTO dead_letters (destination_id, run_id, seq, message_id, action, reason,"
    " status, response, payload, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
_key_encode = msgspec.json.Encoder().encode
_key_decode = msgspec.json.Decoder(tuple[str, str, str]).decode


def _dump_key(key: CountKey) -> str:
    return _key_encode(list(key)).decode()


def _dump_counts(counts: Mapping[CountKey, int]) -> str:
    return json.dumps({_dump_key(k): n for k, n in counts.items() if n})


def _load_counts(value: dict[str, int]) -> dict[CountKey, int]:
    return {_key_decode(k): int(n) for k, n in value.items() if n}


def _run(row: dict[str, Any]) -> Run:
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


def _dead_letter(row: dict[str, Any]) -> DeadLetter:
    return DeadLetter(row["destination_id"], row["run_id"], row["seq"], row["message_id"],
                      row["action"], row["reason"], row["status"], row["response"],
                      None if row["payload"] is None else json.loads(row["payload"]),
                      row["created_at"], DeadLetterState(row["state"]), row["redriven_at"],
                      row["id"])


class PgRunStore:
    """:class:`~millpond.storage.contracts.RunStore`; see the module docstring."""

    def __init__(self, db: PgState):
        self._db = db
        db.create_tables(SCHEMA)

    # -- runs ------------------------------------------------------------------------------
    def create(self, run: Run) -> Run:
        ts, seq = (None, None) if run.cursor is None else cursor_columns(run.cursor)
        run.created_at = run.created_at or time.time()
        run.updated_at = run.updated_at or run.created_at
        try:
            self._db.execute(
                "INSERT INTO runs (id, destination_id, kind, state, spec, cursor_ts,"
                " cursor_seq, counts, scanned, error, report, created_at, updated_at,"
                " finished_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
                " %s)",
                (run.id, run.destination_id, str(run.kind), str(run.state),
                 json.dumps(run.spec), ts, seq, _dump_counts(run.counts), run.scanned,
                 run.error, None if run.report is None else json.dumps(run.report),
                 run.created_at, run.updated_at, run.finished_at))
        except psycopg.errors.UniqueViolation:
            raise BadRequest(f"a run with id {run.id!r} already exists", field="id") from None
        return run

    def get(self, run_id: str) -> Run:
        row = self._db.execute("SELECT * FROM runs WHERE id = %s", (run_id,)).fetchone()
        if row is None:
            raise NotFound(f"no run {run_id!r}", field="id")
        return _run(row)

    def list(self, destination_id: str | None = None, *, kinds: Iterable[RunKind] = (),
             states: Iterable[RunState] = ()) -> list[Run]:
        kind_list = [str(k) for k in kinds] or None
        state_list = [str(s) for s in states] or None
        rows = self._db.execute(
            "SELECT * FROM runs WHERE (%(d)s::text IS NULL OR destination_id = %(d)s)"
            " AND (%(k)s::text[] IS NULL OR kind = ANY(%(k)s))"
            " AND (%(s)s::text[] IS NULL OR state = ANY(%(s)s))"
            " ORDER BY created_at, ord",
            {"d": destination_id, "k": kind_list, "s": state_list})
        return [_run(r) for r in rows]

    def set_state(self, run_id: str, state: RunState, *, error: str | None = None,
                  report: Mapping[str, Any] | None = None) -> Run:
        now = time.time()
        cur = self._db.execute(
            "UPDATE runs SET state = %s, error = COALESCE(%s, error),"
            " report = COALESCE(%s, report), updated_at = %s,"
            " finished_at = CASE WHEN %s THEN %s ELSE finished_at END WHERE id = %s",
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
        now = time.time()
        sets: list[sql.Composable] = [sql.SQL("updated_at = %s")]
        params: list[Any] = [now]
        if scanned:
            sets.append(sql.SQL("scanned = scanned + %s"))
            params.append(scanned)
        if cursor is not None:
            sets.append(sql.SQL("cursor_ts = %s, cursor_seq = %s"))
            params.extend(cursor_columns(cursor))
        if counts and any(counts.values()):
            sets.append(sql.SQL(_ADD_COUNTS))
            params.append(_dump_counts(counts))
        update = sql.SQL("UPDATE runs SET {} WHERE id = %s").format(sql.SQL(", ").join(sets))
        params.append(run_id)
        packed = [(run_id, _dump_key(k), blob, now)
                  for k, blob in outcome_rows.pack_all(outcomes)]
        with self._db.transaction() as conn:
            if conn.execute(update, params).rowcount == 0:
                raise NotFound(f"no run {run_id!r}", field="id")
            if packed:
                with conn.cursor() as cur:
                    cur.executemany("INSERT INTO outcome_rows (run_id, key, seqs, at)"
                                    " VALUES (%s, %s, %s, %s)", packed)
            if dead:
                with conn.cursor() as cur:
                    cur.executemany(_ADD_DEAD, [dead_values(d, now) for d in dead])
            if redriven:
                conn.execute("UPDATE dead_letters SET state = 'redriven', redriven_at = %s"
                             " WHERE id = ANY(%s)", (now, list(redriven)))

    def outcome_events(self, run_ids: Sequence[str], keys: Sequence[CountKey], *,
                       cursor: str | None = None, limit: int = 50) -> OutcomePage:
        at = outcome_rows.parse_cursor(cursor)
        top = at[0] if at is not None else None

        def rows(run_id: str, key: CountKey) -> Iterator[outcome_rows.Row]:
            # One index range per (run, key), newest first; a page is small, so each range
            # is read up to the rows a page can use (a row holds at least one seq).
            found = self._db.execute(
                "SELECT id, seqs FROM outcome_rows WHERE run_id = %(r)s AND key = %(k)s"
                " AND (%(top)s::bigint IS NULL OR id <= %(top)s) ORDER BY id DESC"
                " LIMIT %(n)s", {"r": run_id, "k": _dump_key(key), "top": top,
                                 "n": limit + 1}).fetchall()
            return iter([(r["id"], bytes(r["seqs"])) for r in found])

        return outcome_rows.page([rows(r, k) for r in dict.fromkeys(run_ids)
                                  for k in dict.fromkeys(keys)], at, limit)

    def prune_outcomes(self, before: float, limit: int = 10_000) -> int:
        with self._db.transaction() as conn:
            oldest = conn.execute("SELECT id, at FROM outcome_rows ORDER BY id LIMIT %s",
                                  (limit,)).fetchall()
            last = outcome_rows.last_expired(((r["id"], r["at"]) for r in oldest), before)
            if last is None:
                return 0
            return conn.execute("DELETE FROM outcome_rows WHERE id <= %s", (last,)).rowcount

    # -- dead letters ----------------------------------------------------------------------
    def dead_letters(self, destination_id: str, *,
                     state: DeadLetterState | None = DeadLetterState.DEAD,
                     after_id: int = 0, limit: int = 100) -> list[DeadLetter]:
        rows = self._db.execute(
            "SELECT * FROM dead_letters WHERE destination_id = %(d)s AND id > %(after)s"
            " AND (%(state)s::text IS NULL OR state = %(state)s) ORDER BY id LIMIT %(limit)s",
            {"d": destination_id, "after": after_id,
             "state": None if state is None else str(state), "limit": limit})
        return [_dead_letter(r) for r in rows]

    def dead_letter(self, dead_letter_id: int) -> DeadLetter:
        row = self._db.execute("SELECT * FROM dead_letters WHERE id = %s",
                               (dead_letter_id,)).fetchone()
        if row is None:
            raise NotFound(f"no dead letter {dead_letter_id}", field="id")
        return _dead_letter(row)

    def count_dead_letters(self, destination_id: str,
                           state: DeadLetterState = DeadLetterState.DEAD) -> int:
        row = self._db.execute("SELECT COUNT(*) AS n FROM dead_letters"
                               " WHERE destination_id = %s AND state = %s",
                               (destination_id, str(state))).fetchone()
        return 0 if row is None else int(row["n"])

    def claim_dead_letters(self, destination_id: str,
                           ids: Sequence[int] | None) -> list[DeadLetter]:
        with self._db.transaction() as conn:  # FOR UPDATE: two claims never share a row
            if ids is None:
                rows = conn.execute("SELECT * FROM dead_letters WHERE destination_id = %s"
                                    " AND state = 'dead' ORDER BY seq, id FOR UPDATE",
                                    (destination_id,)).fetchall()
            else:
                rows = conn.execute("SELECT * FROM dead_letters WHERE id = ANY(%s)"
                                    " ORDER BY seq, id FOR UPDATE", (list(ids),)).fetchall()
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
            conn.execute("UPDATE dead_letters SET state = 'redriving' WHERE id = ANY(%s)",
                         ([r["id"] for r in rows],))
        claimed = [_dead_letter(r) for r in rows]
        for letter in claimed:
            letter.state = DeadLetterState.REDRIVING
        return claimed

    def release_dead_letters(self, ids: Sequence[int]) -> None:
        self._db.execute("UPDATE dead_letters SET state = 'dead' WHERE id = ANY(%s)"
                         " AND state = 'redriving'", (list(ids),))

    def recover_dead_letters(self) -> int:
        return self._db.execute(
            "UPDATE dead_letters SET state = 'dead' WHERE state = 'redriving'").rowcount
