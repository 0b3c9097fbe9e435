"""Dead letters as log lines: counted by reason, one line per checkpoint that stored some.

Why not a line per dead letter: a vendor that refuses a whole batch, or a mapping that
fails on every event, dead-letters thousands of items a minute; the operator needs to
know *that* it happens, how many and why, not each item (the dead-letters API has
those). So a pump hands this what each checkpoint stored, and it writes at most one
line every :data:`EVERY` seconds, summing the rest into the next line; a pump that
stops flushes what is left.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from millpond.storage.models import DeadLetter

log = logging.getLogger("millpond.delivery")

#: The least time between two dead-letter lines of one pump (seconds).
EVERY = 10.0
#: Reasons quoted in one line (the most frequent); the rest are only counted.
TOP_REASONS = 3
#: How much of one reason a line quotes.
REASON_CHARS = 200


class DeadLetterLog:
    """Counts a pump's stored dead letters and logs them; see the module docstring.

    ``label`` names the pump in the message (``destination "hook"``, ``replay rpl_1 of
    destination "hook"``); ``fields`` are the structured fields every line carries."""

    def __init__(self, label: str, fields: dict[str, Any], *, every: float = EVERY,
                 clock: Callable[[], float] = time.monotonic):
        self.label = label
        self.fields = fields
        self.every = every
        self._clock = clock
        self._reasons: Counter[str] = Counter()
        self._last: float | None = None

    def add(self, rows: Iterable[DeadLetter]) -> None:
        """Count dead letters just stored, and log if a line is due."""
        for row in rows:
            self._reasons[_short(row.reason or "no reason given")] += 1
        self.flush()

    def flush(self, force: bool = False) -> None:
        """Log what was counted, if anything, when a line is due (or ``force``)."""
        if not self._reasons:
            return
        now = self._clock()
        if not force and self._last is not None and now - self._last < self.every:
            return
        reasons, self._reasons = self._reasons, Counter()
        self._last = now
        total = sum(reasons.values())
        top = reasons.most_common(TOP_REASONS)
        shown = "; ".join(f"{n:,} × {reason}" for reason, n in top)
        others = total - sum(n for _, n in top)
        if others:
            shown += f"; {others:,} for other reasons"
        log.warning("%s: %s dead-lettered (%s)", self.label,
                    "1 event" if total == 1 else f"{total:,} events", shown,
                    extra={**self.fields, "phase": "dead_lettered", "dead_lettered": total,
                           "reasons": dict(top)})


def _short(reason: str) -> str:
    flat = " ".join(reason.split())
    return flat if len(flat) <= REASON_CHARS else flat[:REASON_CHARS] + "…"
