"""Small conversions every vendor module needs on the wire.

Segment-spec events carry ISO 8601 timestamps, while Mixpanel and Amplitude
want epoch milliseconds and Customer.io epoch seconds. Mappings can only move
values around (mapping-kit has no date arithmetic), so `build_request`
normalises time fields with these helpers. All of them are total: a value
they cannot convert is returned unchanged, so the vendor's validation (or
`validate_item` before it) reports it instead of an exception.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import msgspec

_encoder = msgspec.json.Encoder()

#: Epoch values at or above this are taken as milliseconds (it is 5138-11-16 in
#: seconds and 1973-03-03 in milliseconds), the same heuristic Mixpanel applies.
_MS_THRESHOLD = 100_000_000_000


def json_bytes(value: Any) -> bytes:
    """Compact JSON (what every vendor here accepts)."""
    return _encoder.encode(value)


def basic_auth(username: str, password: str = "") -> str:
    """An `Authorization` header value for HTTP Basic (RFC 7617)."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def parse_time(value: Any) -> datetime | None:
    """An aware datetime from ISO 8601 text or epoch seconds/milliseconds, else None.

    Naive ISO text is taken as UTC (Segment's libraries always send an offset;
    CSV imports may not)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if abs(value) >= _MS_THRESHOLD else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def to_epoch_ms(value: Any) -> Any:
    """Integer epoch milliseconds, or `value` unchanged if it is not a time."""
    parsed = parse_time(value)
    if parsed is None:
        return value
    return int(parsed.timestamp() * 1000 + (0.5 if parsed.timestamp() >= 0 else -0.5))


def to_epoch_seconds(value: Any) -> Any:
    """Integer epoch seconds (floor), or `value` unchanged if it is not a time."""
    parsed = parse_time(value)
    if parsed is None:
        return value
    return int(parsed.timestamp() // 1)


def to_iso(value: Any) -> Any:
    """ISO 8601 text in UTC with milliseconds, or `value` unchanged."""
    if isinstance(value, str):
        return value
    parsed = parse_time(value)
    if parsed is None:
        return value
    return parsed.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_now_iso() -> str:
    """Now as ISO 8601 UTC text (envelope `sentAt`)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def drop_none(record: dict) -> dict:
    """`record` without top-level keys whose value is None (vendors reject
    `"user_id": null` where they accept a missing key)."""
    return {key: value for key, value in record.items() if value is not None}


def byte_len(value: Any) -> int:
    """UTF-8 length of a string, or JSON length of anything else."""
    if isinstance(value, str):
        return len(value.encode())
    return len(_encoder.encode(value))


def id_text(value: Any) -> str | None:
    """An identifier as text: strings as is, integers stringified, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    return None


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: where a vendor's other API lives when its
    settings override the ingestion endpoint (a proxy or a test fake serves both)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
