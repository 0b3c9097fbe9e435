"""A sink that appends straight into the log, for imports run inside the server.

It applies exactly the collector's per-message validation (``normalize``), so an
event imported by upload and one posted to ``/v1/import`` are stored the same way.

It is a :class:`~millpond.backfill.sinks.PipelinedSink`: ``submit`` validates a batch
and queues it on the log's group-commit writer without waiting, so the runner converts
the next rows while this batch commits. And it is a
:class:`~millpond.backfill.sinks.PreparingSink`: by default the validation runs in the
import's reader process (:func:`~millpond.backfill.prepare.prepare_records`), next to
the parsing, and the server's interpreter only rebuilds the records and commits them
(:meth:`LogSink.submit_prepared`); see :mod:`millpond.backfill.reader_process`.

The events the CSV importer builds all have one of two shapes (an identify with
``traits`` or a track with ``properties``, plus ``messageId``, ``userId``, ``context``
and a whole-second ``timestamp``). For those, most of ``normalize`` is provably a no-op,
so :func:`~millpond.backfill.prepare.prepare_batch` only checks what could still fail
and splices the three fields ``normalize`` appends onto the JSON the runner already
encoded, instead of encoding the event a second time. Anything else (JSONL messages,
unusual values) goes through ``normalize`` itself; the tests check that both paths store
the same bytes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from millpond.backfill.prepare import PREPARED, RecordPreparer, prepare_batch
from millpond.backfill.sinks import SinkResult
from millpond.regulations.blocklist import SUPPRESSED_REASON, Blocklist, screen_out
from millpond.storage.contracts import EventLog
from millpond.storage.models import AppendResult, NewEvent


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

    def preparer(self) -> RecordPreparer:
        """What the reader process applies to each batch (chunk by chunk as it fills):
        :func:`~millpond.backfill.prepare.prepare_records`."""
        return RecordPreparer(self.source_id, self.clock, self.log.dedupe_keyer())

    def submit_prepared(self, prepared: bytes) -> Future[SinkResult]:
        """Queue a batch :class:`RecordPreparer` made; the future resolves once durable."""
        valid, rejected = PREPARED.decode(prepared)
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
