"""How run state and window positions become table columns, the same for every SQL
backend (``sqlite/``, ``postgres/``): one place, so a dead letter, a cursor or where a
window scan starts is the same wherever it goes."""

from __future__ import annotations

import json

from millpond.storage.models import DeadLetter, WindowCursor

#: A ``dead_letters`` row as the backends insert it.
DeadRow = tuple[str, str, int, str | None, str, str, int | None, str | None, str | None, float]


def dead_values(d: DeadLetter, now: float) -> DeadRow:
    """A dead letter's column values (its payload as JSON text; ``now`` when it has no
    creation time yet)."""
    return (d.destination_id, d.run_id, d.seq, d.message_id, d.action, d.reason, d.status,
            d.response, None if d.payload is None else json.dumps(d.payload),
            d.created_at or now)


def cursor_columns(cursor: int | WindowCursor) -> tuple[int | None, int]:
    """``(ts, seq)``: a window cursor keeps both, a seq cursor only its seq."""
    if isinstance(cursor, WindowCursor):
        return cursor.ts, cursor.seq
    return None, int(cursor)


def window_start(ts_from: int, after: WindowCursor | None) -> tuple[int, int]:
    """The (ts, seq) a window scan starts strictly after."""
    if after is None:
        return (ts_from, 0)
    return (max(ts_from, after.ts), after.seq if after.ts >= ts_from else 0)
