"""The import's validation, as the reader process runs it: rows' events to log records.

The reader half of :class:`~millpond.backfill.log_sink.LogSink` (see that module for
the fast path and why it is exact). It is a module of its own because the reader
process imports it (the preparer it runs is :func:`prepare_records`): it must bring
only what validation needs, not the sink's screening and its metrics, which the server
half runs (``prometheus_client`` alone is ~8 MB of every reader process).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

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


#: Milliseconds into the day of each ``HH:MM`` and each ``SS.000Z`` (see :func:`_canonical_ms`).
_CLOCK_MS = {f"{h:02d}:{m:02d}": (h * 60 + m) * 60_000 for h in range(24) for m in range(60)}
_SECOND_MS = {f"{s:02d}.000Z": s * 1000 for s in range(60)}
#: Epoch milliseconds of each ``YYYY-MM-DD`` seen lately (a file's times span few days).
_DAY_MS: dict[str, int] = {}
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def _canonical_ms(stamp: Any) -> int | None:
    """Unix ms of a ``YYYY-MM-DDTHH:MM:SS.000Z`` timestamp with a year from 1000 on, else None.

    For those, ``format_ms(parse_iso_ms(s)) == s``: whole seconds convert exactly to
    milliseconds and back, and ``format_ms`` writes the same fields. So normalize rewrites
    the timestamp to the very same string. Earlier years take the ``normalize`` path, which
    also checks the lower bound of the range. The milliseconds are those of
    ``datetime.fromisoformat(s).timestamp() * 1000`` (exact for whole seconds), added up
    from tables: the time fields from two fixed ones (which hold exactly the valid ASCII
    values), the date from a memo filled by ``date.fromisoformat``. Every importer event
    has a new timestamp: ``fromisoformat(s).timestamp()`` and the format checks took
    0.59 µs an event, the tables 0.34.
    """
    if type(stamp) is not str or len(stamp) != 24 or stamp[10] != "T" or stamp[16] != ":":
        return None
    try:  # the tables' keys hold the other separators, and ".000Z"
        return _DAY_MS[stamp[:10]] + _CLOCK_MS[stamp[11:16]] + _SECOND_MS[stamp[17:]]
    except KeyError:
        pass
    day = _day_ms(stamp[:10])
    clock = _CLOCK_MS.get(stamp[11:16])
    second = _SECOND_MS.get(stamp[17:])
    if clock is None or second is None or day is None:
        return None
    return day + clock + second


def _day_ms(day: str) -> int | None:
    """Epoch ms of midnight UTC on ``YYYY-MM-DD`` (ASCII digits, year 1000 on), else None."""
    if not (day[4] == "-" and day[7] == "-" and day[0] != "0" and day.isascii()
            and day[:4].isdigit() and day[5:7].isdigit() and day[8:].isdigit()):
        return None
    try:
        ordinal = date.fromisoformat(day).toordinal()
    except ValueError:
        return None
    if len(_DAY_MS) >= 8192:
        _DAY_MS.clear()
    ms = _DAY_MS[day] = (ordinal - _EPOCH_ORDINAL) * 86_400_000
    return ms


def prepare_batch(events: list[Any], encoded: list[bytes] | None, source_id: str,
                  received_ms: int, keyer: Callable[[str, str], int] | None = None,
                  ) -> tuple[list[NewEvent], list[tuple[int, str]]]:
    """``normalize`` every event of a batch: the records to append and the rejections.

    ``encoded[i]``, when given, must be ``msgspec.json.encode(events[i])``. With a
    ``keyer`` (see :func:`prepare_records`), each record's ``dedupe_key`` is filled
    as it is made. The result
    is exactly what calling ``normalize(event, source_id=..., received_ms=...)`` on each
    event would give (the tests compare the bytes). For an importer-shaped event the
    work ``normalize`` would do is mostly a no-op, so it is skipped:

    - the type is identify or track and the keys are exactly those ``csv_events``
      builds, so no field is unknown, and ``writeKey``, ``anonymousId``, ``sentAt``,
      ``originalTimestamp``, ``integrations`` and ``receivedAt`` are absent;
    - traits / properties / context are dicts; context holds no ``traits`` to merge;
    - ``userId``, ``messageId`` (and a track's ``event``) are non-empty strings within
      their length limits, so they are kept as they are;
    - the timestamp is canonical (:func:`_canonical_ms`), so normalize keeps the same
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
    canonical_ms = _canonical_ms
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
                        ts_ms = canonical_ms(event.get("timestamp"))
                        end = tail
                    else:
                        ts_ms = received_ms
                        end = tail_no_time
                    if ts_ms is not None:
                        json = _encode(event) if encoded is None else encoded[index]
                        body = json[:-1] + end
                        if len(body) <= max_body:
                            prepared = NewEvent(  # kind: "identify" or "track" here
                                source_id, kind, message_id, name, user_id, None, ts_ms,  # pyright: ignore[reportArgumentType]
                                received_ms, body,
                                None if keyer is None else keyer(source_id, message_id))
        if prepared is None:
            try:
                prepared = normalize(event, source_id=source_id, received_ms=received_ms,
                                     received_at=received_at)
            except MessageRejected as exc:
                rejected.append((index, f"{exc.code}: {exc.reason}"))
                continue
            if keyer is not None:
                prepared.dedupe_key = keyer(source_id, prepared.message_id)
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
    valid, rejected = prepare_batch(events, encoded, source_id, int(clock() * 1000), keyer)
    return _encode_prepared((valid, rejected))


class RecordPreparer:
    """:func:`prepare_records` for one source, as the log sink hands it to the reader
    process: a picklable callable, which can also take a batch in chunks (a
    :class:`~millpond.backfill.batching.ChunkPreparer`).

    In chunks, each ``add`` prepares its events at once (while they are still in the
    CPU's cache) and ``finish`` packs the batch: the same records and rejections as
    calling it on the whole batch, the receive time read once per batch too (at its
    first chunk rather than its last).
    """

    def __init__(self, source_id: str, clock: Callable[[], float],
                 keyer: Callable[[str, str], int] | None):
        self.source_id = source_id
        self.clock = clock
        self.keyer = keyer
        self._received_ms: int | None = None
        self._valid: list[NewEvent] = []
        self._rejected: list[tuple[int, str]] = []
        self._count = 0

    def __call__(self, events: list[Any], encoded: list[bytes]) -> bytes:
        return prepare_records(self.source_id, self.clock, self.keyer, events, encoded)

    def add(self, events: list[Any], encoded: list[bytes] | None) -> None:
        if self._received_ms is None:
            self._received_ms = int(self.clock() * 1000)
        valid, rejected = prepare_batch(events, encoded, self.source_id, self._received_ms,
                                        self.keyer)
        self._valid += valid
        offset = self._count
        self._rejected += [(index + offset, reason) for index, reason in rejected]
        self._count += len(events)

    def finish(self) -> bytes:
        packed = _encode_prepared((self._valid, self._rejected))
        self._received_ms = None
        self._valid, self._rejected, self._count = [], [], 0
        return packed
