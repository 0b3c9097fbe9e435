"""Membership changes as events: ``Audience Entered`` / ``Audience Exited`` in the log.

Why events and not a callback: destinations already know how to take events with
triggers, trigger windows (``max_event_age``), rate limits, dead letters and replay, so
a segment's outputs are ordinary ``track`` events (Segment's Engage names and
properties) under the built-in ``computed`` source. Their ``timestamp`` is the *event
time* the condition changed: a person who entered because of two-year-old backfilled
purchases gets a two-year-old timestamp, and an action with a 72 h ``max_event_age``
skips it with its reason rather than firing a campaign.

``messageId`` is a digest of the segment, the person, the change and how many changes
came before it, so re-running the same work (after a crash between the append and the
membership write) stores nothing twice: the log dedupes it.
"""

from __future__ import annotations

import functools
import hashlib
import time
from typing import Any

import msgspec

from millpond.collector.validation import normalize
from millpond.storage.models import NewEvent, Segment, Source
from millpond.timeutil import MAX_MS, MIN_MS, format_ms, format_second

#: The built-in source of computed events (not writable from outside, replayable).
COMPUTED_SOURCE_ID = "computed"
ENTERED = "Audience Entered"
EXITED = "Audience Exited"


def computed_source() -> Source:
    """The record of the built-in source. Its write key is never accepted: the collector
    refuses sources of kind ``computed`` (only millpond writes them)."""
    return Source(COMPUTED_SOURCE_ID, "computed", "computed", "computed:" + "-" * 32,
                  replayable=True, created_at=time.time())


def message_id(segment_id: str, person_id: str, member: bool, at_ms: int | None,
               generation: int) -> str:
    text = f"{segment_id}\0{person_id}\0{int(member)}\0{at_ms}\0{generation}"
    return "aud_" + hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


_second = functools.lru_cache(maxsize=1 << 16)(format_second)


def _iso(ms: int) -> str:
    """:func:`~millpond.timeutil.format_ms` for the many different event times of a
    build: the formatted seconds are cached (its own cache keeps only the last one)."""
    second, frac = divmod(ms, 1000)
    return f"{_second(second)}{frac:03d}Z"


def audience_event(segment: Segment, *, person_id: str, user_id: str | None,
                   anonymous_id: str | None, member: bool, at_ms: int, generation: int,
                   received_ms: int, received_at: str | None = None) -> NewEvent:
    """The ``Audience Entered`` (``member``) or ``Exited`` event, ready to append
    (``received_at``: ``received_ms`` formatted, shared by a batch)."""
    properties: dict[str, Any] = {"audience_key": segment.key, "audience_name": segment.name,
                  "segment_id": segment.id, "person_id": person_id}
    # As Segment's Engage: the membership as a boolean keyed by the audience, among the
    # properties (unless the key is one of the names above) and as the person's trait in
    # ``context.traits``, which the identify-style presets send as a trait update.
    properties.setdefault(segment.key, member)
    msg: dict = {
        "type": "track",
        "event": ENTERED if member else EXITED,
        "messageId": message_id(segment.id, person_id, member, at_ms, generation),
        "timestamp": _iso(at_ms),
        "properties": properties,
        "context": {"traits": {segment.key: member}},
    }
    if user_id is not None:
        msg["userId"] = user_id
    if anonymous_id is not None and user_id is None:
        msg["anonymousId"] = anonymous_id
    if not user_id and not anonymous_id or not MIN_MS < at_ms < MAX_MS:
        # What the collector's rules say of an odd one (no id, a time out of range).
        return normalize(msg, source_id=COMPUTED_SOURCE_ID, received_ms=received_ms,
                         received_at=received_at)
    return _record(msg, user_id or None, None if user_id else anonymous_id or None, at_ms,
                   received_ms, received_at or format_ms(received_ms))


_encode = msgspec.json.Encoder().encode


def _record(msg: dict[str, Any], user_id: str | None, anonymous_id: str | None, at_ms: int,
            received_ms: int, received_at: str) -> NewEvent:
    """The record :func:`~millpond.collector.validation.normalize` makes of an Audience
    message, byte for byte, without validating what millpond wrote itself: a build
    makes one per change of a hundred thousand people, and normalize's checks were a
    tenth of its CPU (a test compares the two)."""
    msg["receivedAt"] = received_at
    msg["source_id"] = COMPUTED_SOURCE_ID
    msg["received_at"] = received_at
    return NewEvent(COMPUTED_SOURCE_ID, "track", msg["messageId"], msg["event"], user_id,
                    anonymous_id, at_ms, received_ms, _encode(msg))
