"""The import's validation, as the reader process runs it: rows' events to log records.

The reader half of :class:`~millpond.backfill.log_sink.LogSink` (see that module for
the fast path and why it is exact). It is a module of its own because the reader
process imports it (the preparer it runs is :func:`prepare_records`): it must bring
only what validation needs, not the sink's screening and its metrics, which the server
half runs (``prometheus_client`` alone is ~8 MB of every reader process).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeGuard, cast

import msgspec

from millpond.collector.validation import (
    MAX_MESSAGE_BYTES,
    MAX_MESSAGE_ID,
    MessageRejected,
    normalize,
)
from millpond.storage.models import NewEvent
from millpond.timeutil import format_ms

_encode = msgspec.json.Encoder().encode

_MAX_ID = 1024
_MAX_BODY = MAX_MESSAGE_BYTES + 512


def _canonical_time(stamp: Any) -> TypeGuard[str]:
    """True for ``YYYY-MM-DDTHH:MM:SS.000Z`` with a year from 1000 on.

    For those (once ``fromisoformat`` accepts them), ``format_ms(parse_iso_ms(s)) == s``:
    whole seconds convert exactly to milliseconds and back, and ``format_ms`` writes the
    same fields. So normalize rewrites the timestamp to the very same string. Earlier
    years take the ``normalize`` path, which also checks the lower bound of the range.
    """
    return (type(stamp) is str and len(stamp) == 24 and stamp[19:] == ".000Z"
            and stamp[4] == "-" and stamp[7] == "-" and stamp[10] == "T"
            and stamp[13] == ":" and stamp[16] == ":" and stamp[0] != "0"
            and stamp.isascii())


def prepare_batch(events: list[Any], encoded: list[bytes] | None, source_id: str,
                  received_ms: int) -> tuple[list[NewEvent], list[tuple[int, str]]]:
    """``normalize`` every event of a batch: the records to append and the rejections.

    ``encoded[i]``, when given, must be ``msgspec.json.encode(events[i])``. The result
    is exactly what calling ``normalize(event, source_id=..., received_ms=...)`` on each
    event would give (the tests compare the bytes). For an importer-shaped event the
    work ``normalize`` would do is mostly a no-op, so it is skipped:

    - the type is identify or track and the keys are exactly those ``csv_events``
      builds, so no field is unknown, and ``writeKey``, ``anonymousId``, ``sentAt``,
      ``originalTimestamp``, ``integrations`` and ``receivedAt`` are absent;
    - traits / properties / context are dicts; context holds no ``traits`` to merge;
    - ``userId``, ``messageId`` (and a track's ``event``) are non-empty strings within
      their length limits, so they are kept as they are;
    - the timestamp is canonical (:func:`_canonical_time`), so normalize keeps the same
      string, and its milliseconds are ``parse_iso_ms``'s arithmetic; without one, it
      becomes ``receivedAt`` appended after the existing keys;
    - normalize then appends ``receivedAt``, ``source_id`` and ``received_at``, and
      appending keys to a dict appends them to its JSON: the body is the event's JSON
      with that tail spliced in before the closing brace.

    Any event that fails a check takes the ``normalize`` path, which rejects or
    normalises it as the collector would. A body over the size limit does too.
    """
    received_at = format_ms(received_ms)
    stamp_json = _encode(received_at)
    tail = (b',"receivedAt":' + stamp_json + b',"source_id":' + _encode(source_id)
            + b',"received_at":' + stamp_json + b"}")
    tail_no_time = b',"timestamp":' + stamp_json + tail
    max_id, max_message_id, max_body = _MAX_ID, MAX_MESSAGE_ID, _MAX_BODY
    fromisoformat = datetime.fromisoformat
    valid: list[NewEvent] = []
    rejected: list[tuple[int, str]] = []
    for index, event in enumerate(events):
        prepared = None
        if type(event) is dict:
            # The exact key sets: the expected keys are all present (the type checks
            # below fail on a missing one) and the length leaves room for no other.
            kind = event.get("type")
            size = len(event)
            context = event.get("context")
            if kind == "identify":
                name = None
                payload = event.get("traits")
                timed = size == 6
                shaped = (timed or size == 5) and (type(context) is dict
                                                   and "traits" not in context)
            elif kind == "track":
                name = event.get("event")
                payload = event.get("properties")
                timed = size == 7
                shaped = ((timed or size == 6) and type(name) is str and name != ""
                          and type(context) is dict)
            else:
                shaped = False
            if shaped and type(payload) is dict:
                user_id = event.get("userId")
                message_id = event.get("messageId")
                if (type(user_id) is str and 0 < len(user_id) <= max_id
                        and type(message_id) is str and 0 < len(message_id) <= max_message_id):
                    if timed:
                        stamp = event.get("timestamp")
                        try:  # parse_iso_ms's arithmetic; the stamp carries its offset ("Z")
                            ts_ms = (int(fromisoformat(stamp).timestamp() * 1000)
                                     if _canonical_time(stamp) else None)
                        except ValueError:
                            ts_ms = None
                        end = tail
                    else:
                        ts_ms = received_ms
                        end = tail_no_time
                    if ts_ms is not None:
                        json = _encode(event) if encoded is None else encoded[index]
                        body = json[:-1] + end
                        if len(body) <= max_body:
                            prepared = NewEvent(source_id, cast(str, kind), message_id, name,
                                                user_id, None, ts_ms, received_ms, body)
        if prepared is None:
            try:
                prepared = normalize(event, source_id=source_id, received_ms=received_ms,
                                     received_at=received_at)
            except MessageRejected as exc:
                rejected.append((index, f"{exc.code}: {exc.reason}"))
                continue
        valid.append(prepared)
    return valid, rejected


#: A prepared batch as it crosses from the reader process: msgpack of (records, rejected).
PREPARED = msgspec.msgpack.Decoder(tuple[list[NewEvent], list[tuple[int, str]]])
_encode_prepared = msgspec.msgpack.Encoder().encode


def prepare_records(source_id: str, clock: Callable[[], float],
                    keyer: Callable[[str, str], int] | None, events: list[Any],
                    encoded: list[bytes]) -> bytes:
    """:func:`prepare_batch` as the reader process runs it, packed for the pipe.

    The records go as msgpack arrays (``NewEvent`` is an array-like Struct), which the
    parent decodes straight into ``NewEvent`` objects: its interpreter, the one that
    commits, spends about 0.2 µs an event on them. Their ``dedupe_key`` is computed here
    too with ``keyer`` (the log's own, ``EventLog.dedupe_keyer()``), so the log's writer
    does not; without one (a backend that keeps no such key) it stays empty. The receive
    time is read from ``clock`` once per batch, as :meth:`LogSink.submit` does.
    """
    valid, rejected = prepare_batch(events, encoded, source_id, int(clock() * 1000))
    if keyer is not None:
        for event in valid:
            event.dedupe_key = keyer(source_id, event.message_id)
    return _encode_prepared((valid, rejected))
