"""Audience events are built without the collector's checks: the very record it makes."""

import pytest

from millpond.collector.validation import normalize
from millpond.segments.outputs import COMPUTED_SOURCE_ID, audience_event
from millpond.storage.models import Segment
from millpond.timeutil import format_ms, parse_iso_ms

RECEIVED = parse_iso_ms("2026-06-01T12:00:00.250Z")


def through_normalize(event) -> object:
    """The same message as the collector's normalize turns it into a record."""
    import msgspec
    msg = msgspec.json.decode(event.body)
    for key in ("receivedAt", "source_id", "received_at"):
        msg.pop(key)
    msg["timestamp"] = format_ms(event.ts_ms)
    return normalize(msg, source_id=COMPUTED_SOURCE_ID, received_ms=RECEIVED)


@pytest.mark.parametrize(("key", "user_id", "anonymous_id", "member", "at_ms"), [
    ("buyers", "ann", None, True, parse_iso_ms("2024-06-01T00:00:00Z")),
    ("buyers", "ann", "anon-1", False, parse_iso_ms("1999-12-31T23:59:59.999Z")),
    ("segment_id", None, "anon-2", True, RECEIVED),  # a key among the property names
    ("vip", "bob", None, False, parse_iso_ms("1970-01-01T00:00:00Z") - 1),
    ("vip", "cat", "anon-3", True, RECEIVED + 1),
    ("old", "dan", None, True, parse_iso_ms("0900-01-02T03:04:05.006Z")),  # before year 1000
])
def test_audience_event_is_the_record_normalize_makes(key, user_id, anonymous_id, member,
                                                      at_ms):
    segment = Segment("seg_1", key, "Buyers", {"event": "Order Completed"})
    event = audience_event(segment, person_id="p_1", user_id=user_id,
                           anonymous_id=anonymous_id, member=member, at_ms=at_ms,
                           generation=2, received_ms=RECEIVED)
    assert event.ts_ms == at_ms
    assert event == through_normalize(event)
