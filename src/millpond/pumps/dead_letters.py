"""Reading and redriving a destination's dead-letter queue.

Rows are written only by :meth:`millpond.pumps.progress.ProgressStore.checkpoint`, in the
same transaction as the cursor that passed their event. A row moves
``dead -> redriving -> redriven``; a redrive interrupted by a restart puts its rows back
to ``dead`` (:meth:`DeadLetterStore.recover`), so none is forgotten half-way.
"""

from __future__ import annotations

import json

from millpond.errors import BadRequest, NotFound
from millpond.pumps.progress import SCHEMA
from millpond.state import StateDB
from millpond.timeutil import format_ms

STATES = ("dead", "redriving", "redriven")


def _iso(seconds: float | None) -> str | None:
    return None if seconds is None else format_ms(int(seconds * 1000))


class DeadLetterStore:
    """Dead letters by destination; ids are global so ``/api/dead-letters/{id}`` works."""

    def __init__(self, db: StateDB):
        self._db = db
        db.executescript(SCHEMA)

    @staticmethod
    def _row(row) -> dict:
        return {
            "id": row["id"], "destination_id": row["destination_id"], "seq": row["seq"],
            "message_id": row["message_id"], "action": row["action"], "reason": row["reason"],
            "status": row["status"], "response": row["response"],
            "payload": None if row["payload"] is None else json.loads(row["payload"]),
            "created_at": _iso(row["created_at"]), "state": row["state"],
            "redriven_at": _iso(row["redriven_at"]),
        }

    def list(self, destination_id: str, *, state: str | None = "dead", after_id: int = 0,
             limit: int = 100) -> list[dict]:
        """Oldest first; ``state`` None means every state."""
        if state is not None and state not in STATES:
            raise BadRequest(f"state must be one of {', '.join(STATES)} or all; got {state!r}",
                             field="state")
        sql = "SELECT * FROM dead_letters WHERE destination_id = ? AND id > ?"
        args: list = [destination_id, after_id]
        if state is not None:
            sql += " AND state = ?"
            args.append(state)
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)
        return [self._row(r) for r in self._db.conn().execute(sql, args)]

    def get(self, dead_letter_id: int) -> dict:
        row = self._db.conn().execute("SELECT * FROM dead_letters WHERE id = ?",
                                      (dead_letter_id,)).fetchone()
        if row is None:
            raise NotFound(f"no dead letter {dead_letter_id}", field="id")
        return self._row(row)

    def count(self, destination_id: str, state: str = "dead") -> int:
        return self._db.conn().execute(
            "SELECT COUNT(*) FROM dead_letters WHERE destination_id = ? AND state = ?",
            (destination_id, state)).fetchone()[0]

    def claim(self, destination_id: str, ids: list[int] | None) -> list[dict]:
        """Move dead rows (all, or ``ids``) to ``redriving`` and return them, by seq.

        Ids that belong to another destination or are not ``dead`` are refused, naming
        them, so a typo never redrives the wrong thing silently."""
        conn = self._db.conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            if ids is None:
                rows = conn.execute("SELECT * FROM dead_letters WHERE destination_id = ? AND"
                                    " state = 'dead' ORDER BY seq, id",
                                    (destination_id,)).fetchall()
            else:
                marks = ",".join("?" * len(ids))
                rows = conn.execute(f"SELECT * FROM dead_letters WHERE id IN ({marks})"
                                    " ORDER BY seq, id", ids).fetchall() if ids else []
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
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return [self._row(r) for r in rows]

    def release(self, ids: list[int]) -> None:
        """Put claimed rows back to ``dead`` (a redrive that could not finish)."""
        self._db.conn().executemany(
            "UPDATE dead_letters SET state = 'dead' WHERE id = ? AND state = 'redriving'",
            [(i,) for i in ids])

    def recover(self) -> int:
        """At start-up: redrives do not survive a restart, so their rows are dead again."""
        return self._db.conn().execute(
            "UPDATE dead_letters SET state = 'dead' WHERE state = 'redriving'").rowcount
