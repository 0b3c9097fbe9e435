"""Time bounds in query strings: ISO 8601, or Unix seconds, or relative (``-7d``)."""

from __future__ import annotations

import time

from millpond.collector.timestamps import BadTimestamp, parse_iso_ms
from millpond.errors import BadRequest

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time_ms(value: str | None, field: str) -> int | None:
    if value is None or value == "":
        return None
    text = value.strip()
    if text.startswith("-") and text[-1:] in _UNITS and text[1:-1].isdigit():
        return int((time.time() - int(text[1:-1]) * _UNITS[text[-1]]) * 1000)
    try:
        return int(float(text) * 1000)
    except ValueError:
        pass
    try:
        return parse_iso_ms(text)
    except BadTimestamp:
        raise BadRequest(f"{field} must be ISO 8601 (2024-05-01T00:00:00Z), Unix seconds or "
                         f"relative like -7d; got {value!r}", field=field) from None
