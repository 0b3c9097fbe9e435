"""ISO 8601 handling for message timestamps, kept fast because it runs per message."""

from __future__ import annotations

from datetime import UTC, datetime

# The instants ``datetime`` can represent: years 1 to 9999.
MIN_MS = -62135596800000
MAX_MS = 253402300800000


class BadTimestamp(ValueError):
    pass


def parse_iso_ms(value: object) -> int:
    """Unix milliseconds of an ISO 8601 string; naive times are taken as UTC."""
    if not isinstance(value, str):
        raise BadTimestamp(f"must be an ISO 8601 string, got {type(value).__name__}")
    try:
        # fromisoformat (3.11+) accepts 'Z', offsets and any fraction digits.
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadTimestamp(
            f"{value[:40]!r} is not an ISO 8601 time, e.g. '2024-05-01T12:00:00.000Z'") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    ms = int(parsed.timestamp() * 1000)
    if not MIN_MS < ms < MAX_MS:
        raise BadTimestamp(f"{value!r} is out of range")
    return ms


_last_second: tuple[int, str] = (-1, "")


def format_ms(ms: int) -> str:
    """ISO 8601 UTC with milliseconds and 'Z', the form SDKs send.

    Every request stamps ``receivedAt``, so the formatted second is reused until the
    clock moves on (a tuple swap is atomic, so threads can share it).
    """
    global _last_second
    second, frac = divmod(ms, 1000)
    cached_second, text = _last_second
    if cached_second != second:
        text = datetime.fromtimestamp(second, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        _last_second = (second, text)
    return f"{text}{frac:03d}Z"


def unix_seconds_to_ms(value: object) -> int:
    """Classic Track API times: Unix seconds (int or float, or a numeric string)."""
    if isinstance(value, bool):
        raise BadTimestamp("must be Unix seconds, got a boolean")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise BadTimestamp(f"{value[:40]!r} is not Unix seconds, e.g. 1714564800") from None
    if not isinstance(value, int | float):
        raise BadTimestamp(f"must be Unix seconds, got {type(value).__name__}")
    if not 0 <= value < 253402300800:
        raise BadTimestamp(f"{value!r} is out of range for Unix seconds")
    return int(value * 1000)
