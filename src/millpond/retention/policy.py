"""What a source's ``retention`` setting may say, and what it means.

``"forever"`` (the default) or a duration with units (``"400d"``, ``"26w"``, ``"12h"``),
counted from each event's *arrival* (``receivedAt``), not its event time: a backfill of
five-year-old purchases is kept as long as anything else that arrived today. A bare
number is refused, as for every duration in millpond: days or seconds is exactly the
ambiguity that deletes data by mistake.
"""

from __future__ import annotations

from millpond.timeutil import parse_duration

FOREVER = "forever"
EXAMPLE = '"forever" or a duration such as "400d", "26w" or "12h"'
#: The shortest retention accepted: below it, events could expire before a destination
#: that is briefly down has had a chance to receive them.
MIN_SECONDS = 3600.0


class BadRetention(ValueError):
    """A retention setting that is not ``forever`` or a duration of at least an hour."""


def retention_seconds(value: object) -> float | None:
    """Seconds events are kept, or None for ``forever``; raises :class:`BadRetention`
    naming the value and a correct example."""
    if not isinstance(value, str):
        raise BadRetention(f"retention must be {EXAMPLE}; got {value!r}")
    text = value.strip()
    if text.lower() == FOREVER:
        return None
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise BadRetention(f"retention must be {EXAMPLE}: {exc}") from None
    if seconds < MIN_SECONDS:
        raise BadRetention(f"retention must be at least 1h (or {FOREVER!r}); got {value!r}")
    return seconds


def normalize(value: object) -> str:
    """The setting as stored: ``forever`` or the duration as written (trimmed);
    :class:`BadRetention` otherwise."""
    seconds = retention_seconds(value)
    return FOREVER if seconds is None else str(value).strip()


def cutoff_ms(retention: str, now: float) -> int | None:
    """The arrival time (Unix ms) before which ``retention`` keeps nothing at ``now``
    (Unix seconds), or None for ``forever``."""
    seconds = retention_seconds(retention)
    return None if seconds is None else int((now - seconds) * 1000)
