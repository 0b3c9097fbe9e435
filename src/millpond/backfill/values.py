"""Cell values: type inference and timestamp parsing for imported files.

Everything here runs once per cell of a possibly 10-million-row file, so the
functions avoid regular expressions and exceptions on the common path: a few
``str`` method calls decide whether a cell can be a number, a boolean or a date
before anything more expensive is tried.

Inference is deliberately conservative: a value is only turned into a number
when nothing is lost by doing so. ``00123`` (zip codes, account numbers) and
integers beyond 2**53 (ids that JavaScript consumers would round) stay text, and
so do ``1e5``, ``NaN`` and ``inf``, which ``float()`` would happily accept.

Timestamps are parsed by :func:`millpond.timeutil.parse_seconds` (shared with the
profile store, so ``_timestamp`` means the same instant on both paths); this
module only explains refusals.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from millpond.timeutil import MAX_SECONDS, format_seconds, parse_seconds

#: Largest integer that survives a round trip through a JavaScript number.
_MAX_SAFE_INT = 2**53

_BOOLEANS = {"true": True, "false": False}
_NUMBER_START = frozenset("-0123456789")
#: First characters of every value :func:`infer_value` can type (numbers, dates, booleans).
MAYBE_TYPED = frozenset("-0123456789tTfF")
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_DAY_PREFIX: dict[int, str] = {}
_CLOCK = [f"T{minute // 60:02d}:{minute % 60:02d}:" for minute in range(1440)]
_SECONDS = [f"{second:02d}.000Z" for second in range(60)]
#: Entries a per-column memo of typed cells holds before it starts over.
MEMO_SIZE = 4096


def _as_number(value: str) -> int | float | None:
    """Return ``value`` as an int or float when it is plain decimal notation, else None."""
    digits = value[1:] if value[0] == "-" else value
    if not digits.isascii():
        return None
    if digits.isdigit():
        if len(digits) > 1 and digits[0] == "0":
            return None  # leading zero: an identifier, not a quantity
        number = int(value)
        return number if -_MAX_SAFE_INT <= number <= _MAX_SAFE_INT else None
    whole, dot, fraction = digits.partition(".")
    if not (dot and whole.isdigit() and fraction.isdigit()):
        return None
    if len(whole) > 1 and whole[0] == "0":
        return None
    return float(value)


def _as_date(value: str) -> str | None:
    """Return an ISO 8601 date or UTC datetime string for ISO-looking input, else None.

    Date-only values stay dates: turning ``2024-01-05`` into a datetime would
    invent a time and a time zone the file never stated.
    """
    if len(value) < 10 or value[4] != "-" or value[7] != "-" or not value[:4].isdigit():
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if len(value) == 10:
        return date(parsed.year, parsed.month, parsed.day).isoformat()
    return iso_utc(parsed)


def infer_value(value: str) -> Any:
    """Type one non-empty, stripped cell: bool, int, float, ISO date string or the text."""
    if len(value) <= 5:
        boolean = _BOOLEANS.get(value.lower())
        if boolean is not None:
            return boolean
    if value[0] in _NUMBER_START:
        number = _as_number(value)
        if number is not None:
            return number
        iso = _as_date(value)
        if iso is not None:
            return iso
    return value


def make_converter(types: str) -> Callable[[str], Any]:
    """Return the per-cell converter for ``types`` (``infer`` or ``text``).

    The ``infer`` converter memoises recent cells: real files repeat values a
    lot (plans, countries, booleans), and a dict hit is several times cheaper
    than inference. The memo is cleared when it grows, so memory stays bounded.
    """
    if types == "text":
        return str
    if types != "infer":
        raise ValueError(f"unknown type handling {types!r} (expected 'infer' or 'text')")
    memo: dict[str, Any] = {}
    get = memo.get
    missing = object()

    def convert(value: str) -> Any:
        result = get(value, missing)
        if result is missing:
            result = remember(memo, value)
        return result

    return convert


def remember(memo: dict[str, Any], value: str) -> Any:
    """``infer_value(value)``, stored in ``memo`` (emptied when it reaches MEMO_SIZE).

    The row loop looks ``value`` up in the column's memo itself and calls this on
    a miss, which saves a function call per cell on the hits.
    """
    if len(memo) >= MEMO_SIZE:
        memo.clear()
    result = memo[value] = infer_value(value)
    return result


def iso_utc(moment: datetime) -> str:
    """Format a datetime as ISO 8601 UTC with milliseconds (``...Z``); naive means UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    elif moment.utcoffset():
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_from_epoch(seconds: float) -> str:
    """Format epoch seconds as ISO 8601 UTC, exactly as the profile store shows them.

    Whole seconds (what CSV exports hold) take a fast path,
    :func:`iso_from_whole_seconds`; the tests check both give the same string.
    """
    whole = int(seconds)
    if whole != seconds or not 0 <= whole <= MAX_SECONDS:
        return format_seconds(seconds)
    return iso_from_whole_seconds(whole)


def iso_from_whole_seconds(whole: int) -> str:
    """:func:`iso_from_epoch` of an int from 0 to ``MAX_SECONDS`` (what
    :func:`unix_seconds_cell` returns), which the row loop calls directly.

    A per-day memo of the date part and tables of the ``THH:MM:`` and ``SS.000Z`` parts,
    ~5x cheaper than the general formatter.
    """
    day = whole // 86_400
    prefix = _DAY_PREFIX.get(day)
    if prefix is None:
        if len(_DAY_PREFIX) >= 8192:
            _DAY_PREFIX.clear()
        prefix = _DAY_PREFIX[day] = date.fromordinal(_EPOCH_ORDINAL + day).isoformat()
    rest = whole % 86_400
    return f"{prefix}{_CLOCK[rest // 60]}{_SECONDS[rest % 60]}"


def unix_seconds_cell(raw: str) -> int | None:
    """A cell of plain ASCII digits (≤ 11, so within range) as whole Unix seconds, else None.

    The common timestamp cell, parsed without the general path: for such a cell
    ``parse_timestamp(raw) == float(result)`` exactly, so callers give the same
    ``iso_from_epoch`` and ``trait_timestamp`` values. Anything else returns None.
    """
    if raw.isdigit() and len(raw) <= 11 and raw.isascii():
        return int(raw)
    return None


def parse_timestamp(value: str | int | float) -> float:
    """Parse Unix seconds or ISO 8601 into epoch seconds; raise ValueError with a reason.

    The parsing itself is :func:`millpond.timeutil.parse_seconds` (as for ``_timestamp``),
    so an imported ``_timestamp`` means exactly the instant the profile store
    will compare it as (naive ISO times are UTC). This wrapper only adds *why* a
    value was refused, for the error report -- including the common mistake of
    Unix milliseconds, which is reported rather than guessed at.
    """
    seconds = parse_seconds(value)
    if seconds is not None:
        return seconds
    raise ValueError(_why_not_a_time(value))


def _why_not_a_time(value: object) -> str:
    if isinstance(value, bool):
        return f"timestamp {value!r} is not a time"
    text = str(value).strip()
    if not text:
        return "timestamp is empty"
    try:
        number = float(text)
    except ValueError:
        return f"unparseable timestamp {text!r} (expected Unix seconds or ISO 8601)"
    if math.isfinite(number) and MAX_SECONDS < number <= MAX_SECONDS * 1000:
        return f"timestamp {text!r} is too large for Unix seconds (milliseconds? divide by 1000)"
    return f"timestamp {text!r} is out of range"


def trait_timestamp(seconds: float) -> int | float:
    """``_timestamp`` as Customer.io expects it: Unix seconds, an int when whole."""
    return int(seconds) if seconds.is_integer() else seconds
