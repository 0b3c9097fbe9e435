"""Column types: what a JSON value becomes, how types combine, and what fits an existing column.

Segment's "Warehouse Schemas" page lists the types it creates (timestamp, integer, float,
boolean, varchar) and says the type is "set up in your warehouse based on the first value that
comes in" and never changed afterwards ("if the first value we received was an integer, we will
set the data type of the field to integer, resulting in a loss of precision"; changing it needs
support and a dropped table). It documents no widening. millpond keeps the part that protects
analysts (**a column's type never changes once created**: no ``ALTER COLUMN TYPE`` locking a
table under running dbt models) and replaces "first value" and silent truncation with rules that
do not depend on arrival order and lose nothing:

**Inference** (:func:`infer`), per JSON value:
``true``/``false`` -> ``boolean``; an integer within int64 -> ``bigint``; any other number ->
``double precision``; a string that is an ISO 8601 date *and time*
(``2024-05-01T12:00:00Z``, ``2024-05-01 12:00:00.123+02:00``; no offset means UTC, as in
:mod:`millpond.profiles.timestamps`) -> ``timestamptz``; any other string (dates without a
time too: a birthday is not an instant), an integer beyond int64, and arrays (kept as JSON
text, as Segment stringifies them) -> ``text``.

**Widening** (:func:`widen`), when one batch brings several types for a column that does not
exist yet: ``bigint`` + ``double precision`` -> ``double precision``; any other mix -> ``text``.
This is a join on a lattice (commutative, associative, idempotent), so the type a new column gets
is a function of the *set* of values in the batch, whatever their order.

**Fitting** (:func:`coerce`), every value into its column's type, once the column exists:
``text`` takes everything (numbers and booleans as their JSON text, arrays and objects as
JSON); ``double precision`` takes any number; ``bigint`` takes integers within int64, and floats
with an integral value (``3.0``); ``boolean`` takes only booleans; ``timestamptz`` takes only ISO
8601 date-time strings. Strings are never parsed as numbers or booleans. A value that does not fit
raises :class:`Misfit` with the reason, and the loader records it in ``millpond_discards`` (never
dropped silently, never truncated: PostgreSQL ``text`` has no 512-character limit). Text holding
a NUL character cannot be stored by PostgreSQL and is a misfit too.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from enum import StrEnum
from operator import attrgetter, itemgetter
from typing import Any

import msgspec

__all__ = [
    "ColumnType",
    "Misfit",
    "coerce",
    "coerce_column",
    "infer",
    "infer_column",
    "parse_timestamp",
    "show_value",
    "widen",
]

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
_NONE = type(None)

_encode = msgspec.json.Encoder(order="sorted").encode


class ColumnType(StrEnum):
    """The five column types millpond creates, spelled as PostgreSQL's ``format_type``."""

    BOOLEAN = "boolean"
    BIGINT = "bigint"
    DOUBLE = "double precision"
    TIMESTAMP = "timestamp with time zone"
    TEXT = "text"


class Misfit(Exception):
    """A value does not fit a column type; ``str(exc)`` is the reason for the discard."""


# Date, then T or space, then hh:mm[:ss[.fraction]], then an optional Z or offset. Stricter than
# datetime.fromisoformat on purpose (it also takes week dates and the basic format, which would
# make e.g. product codes "timestamps").
_ISO = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?(?:[Zz]|[+-]\d{2}(?::?\d{2})?)?"
)


def parse_timestamp(value: str) -> datetime | None:
    """``value`` as an aware datetime if it is an ISO 8601 date-time (no offset: UTC)."""
    if not _ISO.fullmatch(value):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def infer(value: Any) -> ColumnType:
    """The type a new column gets from this (non-null, already flattened) value."""
    kind = type(value)
    if kind is str:
        return ColumnType.TIMESTAMP if parse_timestamp(value) is not None else ColumnType.TEXT
    if kind is bool:
        return ColumnType.BOOLEAN
    if kind is int:
        return ColumnType.BIGINT if INT64_MIN <= value <= INT64_MAX else ColumnType.TEXT
    if kind is float:
        return ColumnType.DOUBLE
    return ColumnType.TEXT


def infer_column(values: list[Any]) -> ColumnType | None:
    """The type a new column gets from a batch's ``values`` (None: no value at all).

    The same as widening :func:`infer` of each non-null value, but the usual columns (all
    strings, all integers, all floats, all booleans) are decided in C-level passes: ``text``
    absorbs every other type, so one string that is not a date-time settles a string column.
    """
    kinds = set(map(type, values))
    kinds.discard(_NONE)
    if not kinds:
        return None
    if kinds == _STR:
        strings = [v for v in values if v is not None] if None in values else values
        if not all(map(_ISO.fullmatch, strings)):
            return ColumnType.TEXT
        try:
            all(map(datetime.fromisoformat, strings))  # raises on the first it cannot read
        except ValueError:
            return ColumnType.TEXT
        return ColumnType.TIMESTAMP
    if kinds <= _NUMBERS:
        ints = [v for v in values if type(v) is int] if float in kinds else \
            [v for v in values if v is not None]
        if ints and (min(ints) < INT64_MIN or max(ints) > INT64_MAX):
            return ColumnType.TEXT
        return ColumnType.DOUBLE if float in kinds else ColumnType.BIGINT
    if kinds == _BOOL:
        return ColumnType.BOOLEAN
    result: ColumnType | None = None
    for value in values:
        if value is not None:
            seen = infer(value)
            result = seen if result is None else widen(result, seen)
    return result


_STR = {str}
_BOOL = {bool}
_NUMBERS = {int, float}


def widen(a: ColumnType, b: ColumnType) -> ColumnType:
    """The least type holding values of both ``a`` and ``b`` (see the module docstring)."""
    if a is b:
        return a
    if {a, b} == {ColumnType.BIGINT, ColumnType.DOUBLE}:
        return ColumnType.DOUBLE
    return ColumnType.TEXT


def show_value(value: Any, limit: int = 500) -> str:
    """``value`` as JSON text for a discard record, shortened to ``limit`` characters."""
    try:
        text = _encode(value).decode()
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _json_type(value: Any) -> str:
    kind = type(value)
    if kind is bool:
        return "boolean"
    if kind is int:
        return "integer"
    if kind is float:
        return "number"
    if kind is str:
        return "text"
    if kind is list:
        return "array"
    if kind is dict:
        return "object"
    return kind.__name__


def _misfit(value: Any, ctype: ColumnType, why: str = "") -> Misfit:
    extra = f" ({why})" if why else ""
    return Misfit(f"{_json_type(value)} value does not fit type {ctype.value}{extra}")


def _text(value: Any) -> str:
    kind = type(value)
    if kind is str:
        text = value
    elif kind is bool:
        return "true" if value else "false"
    elif kind is int or kind is float:
        return _encode(value).decode() if kind is float else str(value)
    elif kind is datetime:
        return value.isoformat()
    else:
        try:
            text = _encode(value).decode()
        except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
            raise Misfit(f"value cannot be written as JSON text: {exc}") from None
    if "\x00" in text:
        raise Misfit("text contains a NUL character, which PostgreSQL text cannot store")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise Misfit("text is not valid Unicode (a lone surrogate)") from None
    return text


def _bigint(value: Any) -> int:
    kind = type(value)
    if kind is int:
        if INT64_MIN <= value <= INT64_MAX:
            return value
        raise _misfit(value, ColumnType.BIGINT, "outside the 64-bit integer range")
    if kind is float and math.isfinite(value) and value == int(value):
        as_int = int(value)
        if INT64_MIN <= as_int <= INT64_MAX:
            return as_int
    raise _misfit(value, ColumnType.BIGINT)


def _double(value: Any) -> float:
    kind = type(value)
    if kind is float or kind is int:
        try:
            return float(value)
        except OverflowError:
            raise _misfit(value, ColumnType.DOUBLE, "too large") from None
    raise _misfit(value, ColumnType.DOUBLE)


def _boolean(value: Any) -> bool:
    if type(value) is bool:
        return value
    raise _misfit(value, ColumnType.BOOLEAN)


def _timestamp(value: Any) -> datetime:
    kind = type(value)
    if kind is str:
        # Lighter than parse_timestamp's regex (that one decides *inference*): into a column
        # that already is timestamptz, any date-and-time fromisoformat reads is an instant.
        if len(value) >= 16 and value[10] in "T ":
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                pass
            else:
                return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
        raise _misfit(value, ColumnType.TIMESTAMP, "not an ISO 8601 date-time")
    if kind is datetime:
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    raise _misfit(value, ColumnType.TIMESTAMP)


#: The coercer of each type: value -> the Python value psycopg's binary COPY expects.
COERCERS = {
    ColumnType.TEXT: _text,
    ColumnType.BIGINT: _bigint,
    ColumnType.DOUBLE: _double,
    ColumnType.BOOLEAN: _boolean,
    ColumnType.TIMESTAMP: _timestamp,
}


def coerce(value: Any, ctype: ColumnType) -> Any:
    """``value`` converted for a ``ctype`` column; raises :class:`Misfit` with the reason."""
    return COERCERS[ctype](value)


#: Column types whose values pass through unchanged when they all have this Python type.
_SAME = {ColumnType.DOUBLE: {float}, ColumnType.BOOLEAN: {bool}}
Misfits = list[tuple[int, Any, str]]


def coerce_column(values: list[Any], ctype: ColumnType) -> tuple[list[Any], Misfits]:
    """A whole column at once: ``(converted values, [(index, value, reason), ...])``.

    Same results as :func:`coerce` on each value (``None`` stays ``None``; a misfit becomes
    ``None`` and is listed), but checks the common case (every value already of the column's
    type) with a few C-level passes over the column instead of a Python call per value: this is
    most of a load's CPU time otherwise.
    """
    kinds = set(map(type, values))
    if ctype is ColumnType.TIMESTAMP and kinds == {str}:
        parsed = _timestamps(values)
        if parsed is not None:
            return parsed, []
    kinds.discard(_NONE)
    if not kinds:
        return values, []
    if ctype is ColumnType.TEXT and kinds == {str}:
        joined = "\x01".join(filter(None, values))
        if "\x00" not in joined:
            if joined.isascii():
                return values, []
            try:
                joined.encode("utf-8")
                return values, []
            except UnicodeEncodeError:
                pass
    elif ctype is ColumnType.BIGINT and kinds == {int}:
        present = [v for v in values if v is not None]
        if min(present) >= INT64_MIN and max(present) <= INT64_MAX:
            return values, []
    elif kinds == _SAME.get(ctype):
        return values, []
    return _each(values, COERCERS[ctype], memo=ctype is ColumnType.TIMESTAMP)


def _timestamps(values: list[str]) -> list[datetime] | None:
    """A column of strings that are all date-times with an offset, parsed in C-level passes
    (what :func:`_timestamp` accepts, checked the same way); None when any is not, so the
    caller falls back to one value at a time, with a reason for each misfit."""
    if min(map(len, values)) < 16 or not set(map(_char10, values)) <= _DATE_TIME_SEPARATORS:
        return None
    try:
        parsed = list(map(datetime.fromisoformat, values))
    except ValueError:
        return None
    return parsed if None not in set(map(_tzinfo, parsed)) else None


_char10 = itemgetter(10)
_tzinfo = attrgetter("tzinfo")
_DATE_TIME_SEPARATORS = frozenset("T ")


def _each(values: list[Any], convert: Any, memo: bool) -> tuple[list[Any], Misfits]:
    out: list[Any] = []
    misfits: Misfits = []
    append = out.append
    # Timestamps repeat (one receivedAt per request, one timestamp per second): parse once.
    cache: dict[str, Any] | None = {} if memo else None
    for i, value in enumerate(values):
        if value is None:
            append(None)
            continue
        if cache is not None and type(value) is str:
            hit = cache.get(value)
            if hit is not None:
                append(hit)
                continue
        try:
            converted = convert(value)
        except Misfit as exc:
            append(None)
            misfits.append((i, value, str(exc)))
            continue
        if cache is not None and type(value) is str:
            cache[value] = converted
        append(converted)
    return out, misfits
