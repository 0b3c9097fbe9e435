"""Time in one place: parsing and formatting instants and durations.

Why one module: the collector, the importer, the profile store, the pumps and the API
all read and write times, and they must agree *exactly* (an imported ``_timestamp`` and
the same instant sent live must tie; a stored ``timestamp`` must read back as the
instant it was written from). Before this module each of them carried its own copy,
and the copies had started to differ. Everything here is a pure function, and every
layer may import it (it depends on nothing but :mod:`millpond.errors`).

Two representations, each where it pays:

- **Unix milliseconds** (``int``) for message times: the collector stamps and
  normalises them per message, so those functions are the fast ones, and
  :func:`format_ms` writes the wire form SDKs send (a public contract).
- **Unix seconds** (``float``) for everything compared or measured: trait times,
  event ages, query bounds typed by people, durations.

Naive ISO 8601 times (no offset) are UTC everywhere: the Segment spec sends UTC, and
guessing the server's zone would make results depend on where millpond runs.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import time
from datetime import UTC, datetime, timedelta

from millpond.errors import BadRequest

__all__ = [
    "MIN_MS", "MAX_MS", "BadTimestamp", "parse_iso_ms", "format_ms", "unix_seconds_to_ms",
    "MIN_SECONDS", "MAX_SECONDS", "datetime_to_seconds", "iso_to_seconds", "parse_seconds",
    "format_seconds", "parse_time_bound", "UNIT_SECONDS", "parse_duration", "human_duration",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_SECOND = timedelta(seconds=1)

# -- milliseconds: message times, per message ------------------------------------------

# The instants ``datetime`` can represent: years 1 to 9999.
MIN_MS = -62135596800000
MAX_MS = 253402300800000


class BadTimestamp(ValueError):
    """A message time that cannot be read; the message names the value and an example."""


def parse_iso_ms(value: object) -> int:
    """Unix milliseconds of an ISO 8601 string; naive times are taken as UTC.

    Raises :class:`BadTimestamp` (the collector turns it into a rejection naming the
    field) for non-strings, unreadable text and instants outside years 1-9999.
    """
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
    # Integer arithmetic: ``int(parsed.timestamp() * 1000)`` goes through a float and puts
    # about one millisecond value in a hundred one millisecond early in the index.
    ms = (parsed - _EPOCH) // _ONE_MS
    if not MIN_MS < ms < MAX_MS:
        raise BadTimestamp(f"{value!r} is out of range")
    return ms


_ONE_MS = timedelta(milliseconds=1)
_last_second: tuple[int, str] = (-1, "")


def _iso_fields(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` of a UTC moment.

    Not strftime: "%Y" does not zero-pad years below 1000 on glibc, and the unpadded
    form is not ISO 8601 (normalize would refuse millpond's own event times)."""
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
            f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}")


@functools.lru_cache(maxsize=1 << 12)
def _date(day: int) -> str:
    """``YYYY-MM-DD`` of a day since the epoch."""
    moment = _EPOCH + timedelta(days=day)
    return f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"


def format_second(second: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.`` of a Unix second: :func:`format_ms` without the fraction.

    The date from a cache of days, the time by arithmetic: the times of a backfill or
    of a segment build's Audience events are nearly all different seconds but few
    different days, and a ``datetime`` per second made :func:`format_ms` of a new second
    cost 2.2 us (1.25 us now), which normalize pays for every event with a time of its
    own."""
    day, rest = divmod(second, 86_400)
    hour, rest = divmod(rest, 3600)
    minute, sec = divmod(rest, 60)
    return f"{_date(day)}T{hour:02d}:{minute:02d}:{sec:02d}."


def format_ms(ms: int) -> str:
    """ISO 8601 UTC with milliseconds and 'Z', the form SDKs send.

    This is the stored form of ``timestamp`` and ``receivedAt`` (a public contract).
    Every request stamps ``receivedAt``, so the formatted second is reused until the
    clock moves on (a tuple swap is atomic, so threads can share it).
    """
    global _last_second
    second, frac = divmod(ms, 1000)
    cached_second, text = _last_second
    if cached_second != second:
        text = format_second(second)
        _last_second = (second, text)
    return f"{text}{frac:03d}Z"


def unix_seconds_to_ms(value: object) -> int:
    """Classic Track API times: Unix seconds (int or float, or a numeric string).

    Stricter than :func:`parse_seconds`: an API client gets a :class:`BadTimestamp`
    saying why, instead of its value being quietly ignored.
    """
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


# -- seconds: instants that are compared and measured ----------------------------------

#: The first instant ``datetime`` can represent, in Unix seconds.
MIN_SECONDS: float = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH).total_seconds()
#: The last one, in *whole* seconds: 9999-12-31T23:59:59.999999 is not representable as
#: a double and would round up into year 10000, where it could not be formatted back.
MAX_SECONDS: float = (datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC) - _EPOCH).total_seconds()


def _in_range(seconds: float) -> float | None:
    if math.isfinite(seconds) and MIN_SECONDS <= seconds <= MAX_SECONDS:
        return float(seconds)
    return None


def _exact_seconds(value: datetime) -> float:
    """Unix seconds of a datetime, naive meaning UTC.

    Exact integer-microsecond arithmetic (timedelta / timedelta is correctly rounded),
    so an ISO string and the equivalent Unix float land on the same double and can tie;
    for aware values it is the very number ``datetime.timestamp()`` gives.
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) / _ONE_SECOND


def datetime_to_seconds(value: datetime) -> float | None:
    """Unix seconds of a datetime (naive means UTC); None outside MIN/MAX_SECONDS."""
    try:
        return _in_range(_exact_seconds(value))
    except OverflowError:  # pragma: no cover - offsets near year 1/9999
        return None


def iso_to_seconds(value: object) -> float | None:
    """Unix seconds of an ISO 8601 string, or None for anything else.

    For reading times millpond stored itself (an event's ``timestamp`` or
    ``receivedAt``) where a missing or odd value must not stop delivery: callers
    treat None as "unknown" (an event of unknown age is not too old).
    """
    if not isinstance(value, str):
        return None
    try:
        return _exact_seconds(datetime.fromisoformat(value))
    except ValueError:
        return None


def parse_seconds(value: object) -> float | None:
    """Unix seconds of any usable form of an instant, or None; never raises.

    Accepted: ``int``/``float`` Unix seconds (``bool`` is not a time although it is an
    ``int``), strings holding such a number (``" 1714564800.5 "``), ISO 8601 strings as
    ``datetime.fromisoformat`` reads them (``Z``, offsets, date-only, basic format) and
    ``datetime`` objects. NaN, infinities and instants outside MIN/MAX_SECONDS are
    None, so every accepted value can be formatted back with :func:`format_seconds`.

    The profile store (``_timestamp``) and the importer both use this one function,
    so "the later update wins" does not depend on which path an update came through.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return _in_range(value)
    if isinstance(value, datetime):
        return datetime_to_seconds(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text:
        return None
    if len(text) >= 10 and text[4] == "-" and text[7] == "-":
        # An ISO date (the usual case): a number has no minus sign there, and float()
        # failing first would cost an exception per value.
        return _iso_seconds(text)
    try:
        return _in_range(float(text))
    except ValueError:
        pass
    except OverflowError:  # pragma: no cover - float() of a str does not overflow, be safe
        return None
    return _iso_seconds(text)


def _iso_seconds(text: str) -> float | None:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return datetime_to_seconds(parsed)


def format_seconds(seconds: float) -> str:
    """Unix seconds as ISO 8601 UTC, like Segment shows them: ``2024-05-01T12:00:00.000Z``.

    Milliseconds are always shown (the usual wire form); microseconds only when
    present, so nothing a sender gave us is rounded away in what we show.
    """
    # Epoch + timedelta rather than fromtimestamp: platform independent for negative times.
    moment = _EPOCH + timedelta(seconds=seconds)
    base = _iso_fields(moment)
    if moment.microsecond % 1000:
        return f"{base}.{moment.microsecond:06d}Z"
    return f"{base}.{moment.microsecond // 1000:03d}Z"


# -- time bounds typed by people (query strings, replay windows) -----------------------

_BOUND_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


#: The range of a window bound: years 1 to 9999 in Unix milliseconds.
MIN_BOUND_MS = -62135596800000
MAX_BOUND_MS = 253402300799999


def parse_time_bound(value: str | None, field: str) -> int | None:
    """Unix milliseconds of a window bound: ISO 8601, Unix seconds or relative (``-7d``).

    None or ``""`` means "unbounded" (None). Relative bounds count back from now, so
    ``--from -7d`` means the same thing on the CLI and in a URL. Raises
    :class:`~millpond.errors.BadRequest` naming ``field`` and the three accepted forms.
    """
    if value is None or value == "":
        return None
    text = value.strip()
    ms: int | None = None
    if text.startswith("-") and text[-1:] in _BOUND_UNITS and text[1:-1].isdigit():
        ms = int((time.time() - int(text[1:-1]) * _BOUND_UNITS[text[-1]]) * 1000)
    else:
        with contextlib.suppress(ValueError, OverflowError):  # "nan", "1e400"
            ms = int(float(text) * 1000)
    if ms is None:
        try:
            ms = parse_iso_ms(text)
        except BadTimestamp:
            ms = None
    if ms is None or not MIN_BOUND_MS <= ms <= MAX_BOUND_MS:
        # Out of range too: a bound past year 9999 fits no stored integer, so it would
        # only fail later, deep in a query.
        raise BadRequest(f"{field} must be ISO 8601 (2024-05-01T00:00:00Z), Unix seconds or "
                         f"relative like -7d, between years 1 and 9999; got {value!r}",
                         field=field)
    return ms


# -- durations -------------------------------------------------------------------------

UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
#: The longest duration accepted, about 100 years: past it every window, age or
#: retention means "no limit" (each of them has a way to say so), and what millpond
#: computes from a duration (a cutoff, a next change) must stay a time it can store
#: and print. "1e20d" once saved a retention that failed every pass.
MAX_DURATION_SECONDS = 36_500 * 86_400.0
_PART = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*([smhdw])")
_EXAMPLE = 'e.g. "90s", "15m", "72h", "7d", "2w" or "1h30m"'


def parse_duration(text: str) -> float:
    """Seconds of a human duration (``"72h"``, ``"1h30m"``, ``"2w"``), e.g. ``max_event_age``.

    Only explicit units are accepted: a bare ``"3600"`` is refused, because whether it
    meant seconds or hours is exactly the ambiguity that ships stale events to a
    destination. Raises ``ValueError`` with an example otherwise, and past
    :data:`MAX_DURATION_SECONDS`.
    """
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
    if total > MAX_DURATION_SECONDS:
        raise ValueError(f"invalid duration {text!r}: at most 36500d (about 100 years)")
    return total


def compact_duration(seconds: float) -> str:
    """``14400`` -> ``4h``; ``5400`` -> ``1h30min``: :func:`human_duration` without spaces,
    for a duration inside a reason (``gave up after 4h: ...``)."""
    return human_duration(seconds).replace(" ", "")


def human_duration(seconds: float) -> str:
    """``1000`` -> ``16 min 40 s``; ``90061`` -> ``1 d 1 h 1 min 1 s``.

    Whole seconds, largest units first: for estimates and reports read by people,
    where "16 min 40 s" says more than "1000.0 s".
    """
    s = int(round(seconds))
    if s < 1:
        return "under 1 s" if seconds > 0 else "0 s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if s >= size:
            parts.append(f"{s // size} {unit}")
            s %= size
    return " ".join(parts)
