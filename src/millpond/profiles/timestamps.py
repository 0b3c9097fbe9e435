"""Trait timestamps: parse what senders put in ``_timestamp`` and format what we show back.

Why a module of its own: the profile store and the CSV importer must agree *exactly* on what
instant a ``_timestamp`` means, otherwise "the later update wins" would depend on which path
the update came through. Everything reduces to one representation, Unix seconds as a float, so
``1714564800``, ``"1714564800"``, ``"2024-05-01T12:00:00Z"`` and ``"2024-05-01T12:00:00.000Z"``
compare as the same instant (and then tie, see :mod:`millpond.profiles`).

Accepted forms (anything else is "unparseable" and the caller falls back to the event's
``timestamp``):

- ``int`` / ``float``: Unix seconds (Customer.io's ``_timestamp`` contract). ``bool`` is rejected
  although it is an ``int`` subclass: ``True`` is not a time.
- strings holding a number (``"1714564800"``, ``" 1714564800.5 "``): Unix seconds.
- ISO 8601 strings as ``datetime.fromisoformat`` reads them in Python 3.11 (``Z`` suffix, offsets,
  date-only, basic format). A string without an offset is taken as UTC: the Segment spec sends
  UTC and guessing the server's local zone would make results depend on where millpond runs.

Values outside ``datetime``'s range (years 1-9999), NaN and infinities are unparseable, so every
accepted value can also be formatted back to ISO 8601.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

__all__ = ["parse_trait_timestamp", "format_timestamp", "MIN_TS", "MAX_TS"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Bounds of what datetime can represent, in Unix seconds.
MIN_TS: float = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH).total_seconds()
# Whole seconds: 9999-12-31T23:59:59.999999 is not representable as a double and would round up
# into year 10000.
MAX_TS: float = (datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC) - _EPOCH).total_seconds()


def _in_range(seconds: float) -> float | None:
    if math.isfinite(seconds) and MIN_TS <= seconds <= MAX_TS:
        return float(seconds)
    return None


def parse_trait_timestamp(value: object) -> float | None:
    """Return ``value`` as Unix seconds, or ``None`` if it is not a usable timestamp.

    Never raises: a bad ``_timestamp`` from one sender must not fail a whole batch, it only
    loses its precedence over the event's own ``timestamp``.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return _in_range(value)
    if isinstance(value, datetime):
        return _from_datetime(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text:
        return None
    try:
        return _in_range(float(text))
    except ValueError:
        pass
    except OverflowError:  # pragma: no cover - float() of a str does not overflow, be safe
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return _from_datetime(parsed)


def _from_datetime(value: datetime) -> float | None:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    # Exact integer-microsecond arithmetic (timedelta / timedelta is correctly rounded), so an
    # ISO string and the equivalent Unix float land on the same double and can tie.
    try:
        return _in_range((value - _EPOCH) / _ONE_SECOND)
    except OverflowError:  # pragma: no cover - offsets near year 1/9999
        return None


_ONE_SECOND = datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC) - _EPOCH


def format_timestamp(seconds: float) -> str:
    """Format Unix seconds as ISO 8601 UTC, like Segment does: ``2024-05-01T12:00:00.000Z``.

    Milliseconds are always shown (the usual wire form); microseconds only when present, so
    nothing a sender gave us is rounded away in what we show.
    """
    # Epoch + timedelta rather than fromtimestamp: platform independent for negative times.
    moment = _EPOCH + timedelta(seconds=seconds)
    # Not strftime: "%Y" does not zero-pad years below 1000 on glibc.
    base = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )
    if moment.microsecond % 1000:
        return f"{base}.{moment.microsecond:06d}Z"
    return f"{base}.{moment.microsecond // 1000:03d}Z"
