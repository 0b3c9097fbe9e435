"""Human durations (``"72h"``, ``"1h30m"``, ``"2w"``) for settings like an action's
``max_event_age``.

Only explicit units are accepted: a bare ``"3600"`` is refused, because whether it meant
seconds or hours is exactly the ambiguity that ships stale events to a destination.
"""

from __future__ import annotations

import re

__all__ = ["parse_duration", "UNIT_SECONDS"]

UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*([smhdw])")
_EXAMPLE = 'e.g. "90s", "15m", "72h", "7d", "2w" or "1h30m"'


def parse_duration(text: str) -> float:
    """Return the duration in seconds; raise ``ValueError`` (with an example) otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"duration must be a string such as \"72h\", not {type(text).__name__}")
    if not text.strip():
        raise ValueError(f"empty duration: write a number and a unit, {_EXAMPLE}")
    total = 0.0
    pos = 0
    for m in _PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if text[pos:].strip() or pos == 0:
        rest = text[pos:].strip() or text
        hint = " (missing unit)" if re.fullmatch(r"\d+(?:\.\d+)?", rest) else ""
        raise ValueError(
            f"invalid duration {text!r}: cannot read {rest!r}{hint}; units are "
            f"s, m, h, d, w, {_EXAMPLE}")
    return total
