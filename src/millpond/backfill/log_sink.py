"""A sink that appends straight into the log, for imports run inside the server.

It applies exactly the collector's per-message validation (``normalize``), so an
event imported by upload and one posted to ``/v1/import`` are stored the same way.

It is a :class:`~millpond.backfill.sinks.PipelinedSink`: ``submit`` validates a
batch and queues it on the log's group-commit writer without waiting, so the
runner converts the next rows while this batch commits. And it is a
:class:`~millpond.backfill.sinks.PreparingSink`: by default the validation runs in
the import's reader process (:func:`prepare_records`), next to the parsing, and
the server's interpreter only rebuilds the records and commits them
(:meth:`LogSink.submit_prepared`); see :mod:`millpond.backfill.reader_process`.

The events the CSV importer builds all have one of two shapes (an identify with
``traits`` or a track with ``properties``, plus ``messageId``, ``userId``,
``context`` and a whole-second ``timestamp``). For those, most of ``normalize`` is
provably a no-op, so :func:`prepare_batch` only checks what could still fail and
splices the three fields ``normalize`` appends onto the JSON the runner already
encoded, instead of encoding the event a second time. Anything else (JSONL
messages, unusual values) goes through ``normalize`` itself; the tests check that
both paths store the same bytes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime
from functools import partial
from typing import Any, TypeGuard, cast

import msgspec

from millpond.backfill.sinks import SinkResult
from millpond.collector.validation import (
    MAX_MESSAGE_BYTES,
    MAX_MESSAGE_ID,
    MessageRejected,
    normalize,
)
from millpond.regulations.blocklist import SUPPRESSED_REASON, Blocklist, screen_out
from millpond.storage.contracts import EventLog
from millpond.storage.models import AppendResult, NewEvent
from millpond.timeutil import format_ms

_encode = msgspec.json.Encoder().encode

_MAX_ID = 1024
_MAX_BODY = MAX_MESSAGE_BYTES + 512


def _canonical_time(stamp: Any) -> TypeGuard[str]:
    """True for ``YYYY-MM-DDTHH:MM:SS.000Z`` with a year from 1000 on.

    For those (once ``fromisoformat`` accepts them), ``format_ms(parse_iso_ms(s)) == s``:
    whole seconds convert exactly to milliseconds and back, and ``%Y`` needs no padding
    from year 1000 on. So normalize rewrites the timestamp to the very same string.
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
_PREPARED = msgspec.msgpack.Decoder(tuple[list[NewEvent], list[tuple[int, str]]])
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


def _screen(valid: list[NewEvent], rejected: list[tuple[int, str]], blocklist: Blocklist,
            source_id: str) -> tuple[list[NewEvent], list[tuple[int, str]]]:
    """Reject the rows of suppressed people (by their index in the batch: the valid
    events are the batch's rows that were not rejected, in order)."""
    gone = {i for i, _ in rejected}
    positions = [i for i in range(len(valid) + len(rejected)) if i not in gone]
    kept = list(valid)
    removed = screen_out(kept, blocklist, source_id)
    if not removed:
        return valid, rejected
    refused = [(positions[i], f"suppressed: {SUPPRESSED_REASON}") for i in removed]
    return kept, sorted(rejected + refused)


def _out_of_retention(valid: list[NewEvent], rejected: list[tuple[int, str]],
                      expired: list[int]) -> list[tuple[int, str]]:
    """Rejections for the events of ``valid`` at ``expired`` (positions in the append):
    their messageId was stored once and retention has deleted it since, so the log
    neither has them nor stores them again (dedupe is forever). Counting them as
    duplicates would say the import's data is there; it is not."""
    if not expired:
        return []
    refused = {i for i, _ in rejected}
    positions = [i for i in range(len(valid) + len(rejected)) if i not in refused]
    return [(positions[i], f"out_of_retention: messageId {valid[i].message_id!r} was stored "
             "before and has been deleted by the source's retention; it is not stored "
             "again") for i in expired]


class LogSink:
    """Validates each event like the collector does and appends the batch to ``log``.

    A :class:`~millpond.backfill.sinks.PipelinedSink`: up to ``max_in_flight`` batches
    may be queued or committing while the runner converts the next rows, and the log's
    writer commits whatever is queued as one group. ``batch_size`` is the batch the
    runner uses unless the options say otherwise. Both are larger than an HTTP
    import's because the writer's cost per event falls steeply with the group size
    (an fsync per commit, and index pages dirtied once per group rather than once per
    event). While one group commits, the batches submitted since wait for the next, so
    a group holds about half of ``max_in_flight``: with 5,000-event batches and 6 in
    flight, groups reach 10-15k events, for ~30 MB of queued records at most.

    ``reader_process`` (default) lets the runner read and validate in a child process;
    ``clock`` gives the receive time (``time.time`` unless a test pins it; it must pickle).
    """

    def __init__(self, log: EventLog, source_id: str, *, max_in_flight: int = 6,
                 batch_size: int = 5000, reader_process: bool = True,
                 clock: Callable[[], float] = time.time, blocklist: Blocklist | None = None):
        self.log = log
        #: Suppressed people: their rows are rejected with the reason ``suppressed``.
        self.blocklist = blocklist
        self.source_id = source_id
        self.max_in_flight = max_in_flight
        self.batch_size = batch_size
        self.reader_process = reader_process
        self.clock = clock

    def send(self, events: list[dict[str, Any]]) -> SinkResult:
        return self.submit(events).result()

    def submit(self, events: list[dict[str, Any]],
               encoded: list[bytes] | None = None) -> Future[SinkResult]:
        """Validate ``events`` now and queue the valid ones; the future resolves once durable.

        ``encoded[i]``, when given, must be ``msgspec.json.encode(events[i])``.
        """
        valid, rejected = prepare_batch(events, encoded, self.source_id,
                                        int(self.clock() * 1000))
        return self._queue(valid, rejected)

    def preparer(self) -> Callable[[list[Any], list[bytes]], Any]:
        """What the reader process applies to each batch: :func:`prepare_records`."""
        return partial(prepare_records, self.source_id, self.clock, self.log.dedupe_keyer())

    def submit_prepared(self, prepared: bytes) -> Future[SinkResult]:
        """Queue a batch :func:`prepare_records` made; the future resolves once durable."""
        valid, rejected = _PREPARED.decode(prepared)
        return self._queue(valid, rejected)

    def _queue(self, valid: list[NewEvent],
               rejected: list[tuple[int, str]]) -> Future[SinkResult]:
        done: Future[SinkResult] = Future()
        if self.blocklist is not None and self.blocklist.active and valid:
            valid, rejected = _screen(valid, rejected, self.blocklist, self.source_id)
        if not valid:
            done.set_result(SinkResult(0, rejected, 0))
            return done
        committing = self.log.submit(valid)

        def finish(future: Future[AppendResult]) -> None:
            try:
                result = future.result()
            except BaseException as exc:  # noqa: BLE001 - the runner's future carries it
                done.set_exception(exc)
            else:
                gone = _out_of_retention(valid, rejected, result.expired)
                done.set_result(SinkResult(result.stored, sorted(rejected + gone),
                                           result.duplicates - len(gone)))

        committing.add_done_callback(finish)
        return done
