"""``run_import``: stream a file into a sink in batches, with a checkpoint and an error report.

The loop holds one batch (≤ ``batch_size`` events and ≤ ``max_batch_bytes``
encoded), plus at most ``max_in_flight`` submitted batches for a
:class:`~millpond.backfill.sinks.PipelinedSink`, and nothing else that grows
with the file, so memory is constant. After each batch the sink acknowledges
(in order: never past a batch that is not durable), the checkpoint records the
last row whose fate is settled; a re-run continues after it. Rows before it
are parsed again (the csv reader runs at >1M rows/s) but not converted or sent.

The batches come from :func:`~millpond.backfill.reading.open_batches`, read in this
thread, or, for a :class:`~millpond.backfill.sinks.PreparingSink` that asks for it
(the log sink), from the same function run in a reader process
(:mod:`millpond.backfill.reader_process`). Either way this module alone settles
batches, writes the error report and the checkpoint, and reports progress.
"""

from __future__ import annotations

import csv
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from millpond.backfill import checkpoint as ckpt
from millpond.backfill.batching import Batch, Item
from millpond.backfill.csvfile import CsvInput, check_file, looks_like_json, scan_text_file
from millpond.backfill.ids import import_fingerprint
from millpond.backfill.model import (
    DEFAULT_BATCH_SIZE,
    EVENTS_NAME_CANDIDATES,
    ImportAborted,
    ImportCancelled,
    ImportInputError,
    ImportOptions,
    ImportProgress,
    ImportSummary,
    RowError,
)
from millpond.backfill.reader_process import ReaderFailed, ReaderProcess
from millpond.backfill.reading import ReadSpec, open_batches
from millpond.backfill.rows import ColumnPlan, StreamStats, check_header, plan_columns
from millpond.backfill.sinks import PipelinedSink, PreparingSink, Sink, SinkResult

ProgressCallback = Callable[[ImportProgress], None]
_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
_REPORT_HEADER = ["row", "line", "column", "code", "reason"]
#: Rejected rows held back while batches are in flight before the runner waits for them.
_MAX_HELD_REJECTIONS = 4096


@dataclass
class Preflight:
    """What a cheap look at the file found (no full read): format, delimiter, columns."""

    format: str
    delimiter: str | None
    header: list[str]
    plan: ColumnPlan | None
    warnings: list[str]


def preflight(path: str | Path, options: ImportOptions) -> Preflight:
    """Validate options, file and header without reading the whole file.

    The CLI calls this before resolving the source, so a typo in a column name
    is reported even when the server is down. Raises :class:`ImportInputError`.
    """
    path = Path(path)
    options.validate()
    check_file(path)
    fmt = options.format or _guess_format(path)
    if fmt == "jsonl":
        if options.kind == "people":
            raise ImportInputError(f"{path.name} looks like JSON; people import takes a CSV file")
        return Preflight("jsonl", None, [], None, [])
    if looks_like_json(path):
        raise ImportInputError(f"{path.name} looks like JSON, not CSV")
    try:
        with CsvInput(path, options.delimiter) as source:
            warnings = check_header(source.header)
            plan = plan_columns(source.header, options)
            return Preflight("csv", source.delimiter, source.header, plan, warnings)
    except UnicodeDecodeError:
        scan_text_file(path)  # raises with the offset of the first bad byte
        raise ImportInputError(f"{path.name} is not UTF-8; re-save it as UTF-8") from None


def choose_kind(path: Path, options: ImportOptions) -> str:
    """The kind of an upload that did not say (the API's and the console's default;
    ``options.kind`` is not read).

    Why not "people" always, as it was: an export of orders uploaded without its kind was
    imported as people, each row a person whose traits were its event name, time and
    properties, with nothing to say so, and those traits cannot be taken back short of
    deleting each person. So: JSON lines and the options only events have are events;
    the option only people have is people; a CSV is people unless its header has the
    event name column the events import would read, and then it must say which."""
    fmt = options.format or _guess_format(path)
    if fmt == "jsonl" or options.event_column or options.user_column:
        return "events"
    if options.id_column:
        return "people"
    try:
        with CsvInput(path, options.delimiter) as source:
            header = source.header
    except (OSError, UnicodeDecodeError, ImportInputError):
        return "people"  # preflight then says what is wrong with the file
    names = {name.strip().lower() for name in EVENTS_NAME_CANDIDATES}
    for column in header:
        if column.strip().lower() in names:
            raise ImportInputError(
                f"{path.name} has an {column.strip()!r} column, so its rows look like events:"
                " choose its kind, events (one event per row) or people (one identify per"
                f" row, {column.strip()!r} a trait)", field="kind")
    return "people"


def _guess_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in _JSONL_SUFFIXES:
        return "jsonl"
    if suffix in (".csv", ".tsv", ".txt"):
        return "csv"
    return "jsonl" if looks_like_json(path) else "csv"


class _ErrorReport:
    """The CSV error report, created on the first error (a clean import leaves none).

    On resume it is truncated to the size the checkpoint recorded, so rows
    re-read after the checkpoint are not reported twice.
    """

    def __init__(self, path: Path, keep_bytes: int):
        self.path = path
        self._keep = keep_bytes
        self._handle: IO[str] | None = None
        self._writer: Any = None

    def write(self, error: RowError) -> None:
        writer = self._writer if self._writer is not None else self._open()
        writer.writerow([error.row, error.line or "", error.column, error.code, error.reason])

    def _open(self) -> Any:
        if self._keep and self.path.exists():
            handle = self.path.open("r+", encoding="utf-8", newline="")
            handle.truncate(self._keep)
            handle.seek(self._keep)
            self._handle, self._writer = handle, csv.writer(handle)
        else:
            handle = self.path.open("w", encoding="utf-8", newline="")
            self._handle, self._writer = handle, csv.writer(handle)
            self._writer.writerow(_REPORT_HEADER)
        return self._writer

    def size(self) -> int:
        if self._handle is None:
            return self._keep
        self._handle.flush()
        return self._handle.tell()

    def close(self) -> None:
        if self._handle is not None:
            self._keep = self.size()
            self._handle.close()
            self._handle = self._writer = None


def run_import(
    path: str | Path,
    options: ImportOptions,
    sink: Sink,
    progress: ProgressCallback | None = None,
    stop: threading.Event | None = None,
) -> ImportSummary:
    """Import ``path`` into ``sink``; resumable, constant memory, never stops on a bad row.

    Raises :class:`ImportInputError` before sending anything if the file or
    options cannot work, and :class:`ImportAborted` (with the summary so far)
    if the sink fails part-way; a later call with ``resume`` continues after the
    last acknowledged batch. An exception raised by ``progress`` also stops the
    import; the checkpoint stays valid. Setting ``stop`` cancels it cleanly: the batches
    already committing settle, the checkpoint is saved past them, and
    :class:`ImportCancelled` is raised with that summary (a resumed run continues there).
    """
    path = Path(path)
    plan = preflight(path, options)
    fingerprint, shaping = _fingerprint(path, options, plan)
    file_name = options.display_name or path.name
    report_path, checkpoint_path = ckpt.default_paths(path, options.errors_path, options.state_dir)
    _check_writable(report_path.parent, checkpoint_path.parent)

    summary = ImportSummary(file_name, options.kind, options.source, fingerprint,
                            checkpoint=str(checkpoint_path), warnings=list(plan.warnings))
    state = ckpt.Checkpoint(str(path.resolve()), fingerprint, options.kind, options.source,
                            error_report=str(report_path))
    previous = ckpt.load(checkpoint_path) if options.resume else None
    if previous is not None and not previous.matches(fingerprint, options.kind, options.source):
        summary.warnings.append(
            "a checkpoint for a different file content, options or source was found; "
            "starting from the first row"
        )
        previous = None
    if previous is not None:
        _restore(summary, previous)
        if previous.completed:
            summary.already_completed = True
            summary.completed = True
            return summary
        state.error_report_bytes = previous.error_report_bytes
        state.last_row = previous.last_row
        if previous.error_report != str(report_path):
            state.error_report_bytes = 0

    runner = _Runner(path, options, sink, progress, summary, state, report_path, checkpoint_path,
                     stop)
    spec = ReadSpec(path, plan.format, plan.delimiter, plan.plan, options, _row_shaping(shaping),
                    file_name, state.last_row, _batch_size(options, sink), runner.pipelined)
    return runner.run(spec)


def fingerprint(path: str | Path, options: ImportOptions) -> str:
    """The fingerprint :func:`run_import` gives ``path`` with ``options`` (what its
    checkpoint must match): a deletion that blanked rows of a kept upload updates the
    checkpoint with it (:mod:`millpond.backfill.forget`)."""
    return _fingerprint(Path(path), options, preflight(path, options))[0]


def _fingerprint(path: Path, options: ImportOptions, plan: Preflight) -> tuple[str, dict]:
    """(fingerprint, shaping options) of ``path``: its content, kind and shaping."""
    content = scan_text_file(path)
    shaping = {"format": plan.format, "types": options.types, "empty": options.empty}
    if plan.plan is not None:
        shaping |= {"delimiter": plan.delimiter, "columns": plan.plan.shaping()}
    return import_fingerprint(content, options.kind, shaping), shaping


def _row_shaping(shaping: dict) -> dict:
    """What of ``shaping`` goes into each row's messageId: not the delimiter nor the order
    of the columns, which change how a file is written, not what its rows say."""
    out = {k: v for k, v in shaping.items() if k != "delimiter"}
    columns = out.pop("columns", None)
    if columns is not None:
        out["roles"] = {k: v for k, v in columns.items() if k != "payload"}
    return out


def _check_writable(*directories: Path) -> None:
    """Fail before sending anything if the error report or checkpoint cannot be written."""
    for directory in directories:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ImportInputError(f"cannot create {directory}: {exc.strerror}") from None
        if not os.access(directory, os.W_OK):
            raise ImportInputError(
                f"cannot write to {directory} (error report and checkpoint go there); "
                "use --errors PATH or --state-dir DIR"
            )


def _restore(summary: ImportSummary, previous: ckpt.Checkpoint) -> None:
    for name in ckpt.COUNTERS:
        setattr(summary, name, previous.counters.get(name, 0))
    summary.rejected_by_reason = dict(previous.rejected_by_reason)
    summary.resumed_after_row = previous.last_row
    summary.last_row = previous.last_row
    if summary.rows_rejected:
        summary.error_report = previous.error_report


@dataclass(slots=True, eq=False)
class _Submitted:
    """A batch handed to the sink and not yet settled, with what settling it will record.

    ``rejections`` are the runner's own rejections of rows up to ``through`` that were
    held back while earlier batches were in flight: they reach the error report (and the
    counters) only when this batch settles, so a checkpoint never covers a row whose
    batch is not durable, and the report never holds a row after the checkpoint.
    """

    future: Future[SinkResult]
    rows: list[int]
    through: int
    rejections: list[RowError]
    blank: int


def _batch_size(options: ImportOptions, sink: Sink) -> int:
    """``options.batch_size``, else the sink's preferred ``batch_size``, else the default."""
    if options.batch_size is not None:
        return options.batch_size
    preferred = getattr(sink, "batch_size", None)
    if type(preferred) is int and preferred >= 1:
        return preferred
    return DEFAULT_BATCH_SIZE


def _failed(future: Future[SinkResult]) -> bool:
    return future.done() and (future.cancelled() or future.exception() is not None)


def _submit_sync(sink: Sink, events: list[dict[str, Any]]) -> Future[SinkResult]:
    """A plain sink's ``send`` as an already settled future (its exception included)."""
    future: Future[SinkResult] = Future()
    try:
        future.set_result(sink.send(events))
    except Exception as exc:  # noqa: BLE001 - settled (and reported) in order by the runner
        future.set_exception(exc)
    return future


class _Runner:
    """One import run: the batch loop, submissions, checkpoints and progress reports.

    With a :class:`PipelinedSink` up to ``max_in_flight`` batches are committing while
    the loop converts the next rows. Batches settle strictly in order: the counters,
    the error report and the checkpoint advance only past a batch that succeeded after
    all the batches before it did. A failed batch stops the import at its first row.
    """

    def __init__(
        self,
        path: Path,
        options: ImportOptions,
        sink: Sink,
        progress: ProgressCallback | None,
        summary: ImportSummary,
        state: ckpt.Checkpoint,
        report_path: Path,
        checkpoint_path: Path,
        stop: threading.Event | None = None,
    ):
        self.path = path
        self.options = options
        self.sink = sink
        self.pipelined = isinstance(sink, PipelinedSink)
        self.max_in_flight = max(1, int(getattr(sink, "max_in_flight", 1)))
        self.progress = progress
        self.stop = stop
        self._stopping = False
        self.summary = summary
        self.state = state
        self.report = _ErrorReport(report_path, state.error_report_bytes)
        self.checkpoint_path = checkpoint_path
        self.stats = StreamStats(on_skip=self._report_progress)
        self.in_flight: deque[_Submitted] = deque()
        self.held: list[RowError] = []
        self.started = time.monotonic()
        self.rows_before = summary.rows_read
        self.blank_before = summary.blank_rows
        self.blank_settled = 0
        self.bytes_read: Callable[[], int] = lambda: 0
        self.total_bytes = path.stat().st_size

    def run(self, spec: ReadSpec) -> ImportSummary:
        sink = self.sink
        try:
            if isinstance(sink, PreparingSink) and sink.reader_process:
                with ReaderProcess(spec, sink.preparer(), self.stats) as reader:
                    self.bytes_read = reader.bytes_read
                    self._consume(reader)
            else:
                with open_batches(spec, self.stats) as (items, bytes_read):
                    self.bytes_read = bytes_read
                    self._consume(items)
        except ReaderFailed as exc:
            raise ImportAborted(str(exc), self.summary) from exc
        finally:
            # Stopping early (a failed batch, a raising progress callback): let the batches
            # still committing finish, so nothing of this run is written after it returns.
            wait([submitted.future for submitted in self.in_flight])
            self.in_flight.clear()
            self.bytes_read = lambda: self.total_bytes
            self.report.close()
            self._update_counters()
        summary = self.summary
        summary.completed = True
        if summary.rows_rejected == 0:
            ckpt.remove(self.report.path)
            summary.error_report = None
        else:
            summary.error_report = str(self.report.path)
        self.state.completed = True
        self._save_checkpoint()
        return summary

    def _consume(self, items: Iterable[Item]) -> None:
        """The batch loop. A row counts as read once its fate is settled (its batch
        acknowledged, or rejected), so the counters saved with a checkpoint cover exactly
        the rows up to it."""
        reject, submit = self._reject_row, self._submit
        for item in items:
            if type(item) is RowError:
                reject(item)
            elif type(item) is Batch:
                submit(item)
            else:
                self._finish(item.through)  # type: ignore[union-attr]

    def _reject_row(self, error: RowError) -> None:
        """A row the runner refuses: reported now, or with its batch if batches are in flight."""
        if not self.in_flight:
            self.summary.rows_read += 1
            self._reject(error)
            return
        self.held.append(error)
        if len(self.held) >= _MAX_HELD_REJECTIONS:  # a long run of bad rows: keep memory flat
            self._settle_all()
            self._release_held()

    def _release_held(self) -> None:
        held, self.held = self.held, []
        self.summary.rows_read += len(held)
        for error in held:
            self._reject(error)

    def _reject(self, error: RowError) -> None:
        summary = self.summary
        summary.rows_rejected += 1
        by_reason = summary.rejected_by_reason
        by_reason[error.code] = by_reason.get(error.code, 0) + 1
        self.report.write(error)
        if summary.rows_rejected % 8192 == 0:
            self._report_progress()

    def _submit(self, batch: Batch) -> None:
        """Hand a batch to the sink; settle what is done (waiting if too much is in flight)."""
        sink = self.sink
        if batch.prepared is not None:
            future = self._guarded(sink.submit_prepared, batch.prepared)  # type: ignore[attr-defined]
        elif self.pipelined:
            future = self._guarded(sink.submit, batch.events, batch.encoded)  # type: ignore[attr-defined]
        else:
            future = _submit_sync(sink, batch.events)  # type: ignore[arg-type]
        held, self.held = self.held, []
        in_flight = self.in_flight
        in_flight.append(_Submitted(future, batch.rows, batch.through, held, batch.blank))
        if any(_failed(submitted.future) for submitted in in_flight):
            self._settle_all()  # no point sending more: stop at the first failed batch
        while in_flight and (len(in_flight) > self.max_in_flight or in_flight[0].future.done()):
            self._settle(in_flight.popleft())

    @staticmethod
    def _guarded(submit: Callable[..., Future[SinkResult]], *args: Any) -> Future[SinkResult]:
        """``submit(*args)``, with an exception it raises as the batch's failure."""
        try:
            return submit(*args)
        except Exception as exc:  # noqa: BLE001 - the batch failed; settled in order
            future: Future[SinkResult] = Future()
            future.set_exception(exc)
            return future

    def _finish(self, through: int) -> None:
        """Every row is read: settle everything and checkpoint ``through``, even when the
        last rows were all rejected or blank. A stop asked for now is too late: the
        whole file is read, so the import completes."""
        self._stopping = True
        self._settle_all()
        self._release_held()
        self.blank_settled = self.stats.blank
        self._checkpoint(through)

    def _settle_all(self) -> None:
        while self.in_flight:
            self._settle(self.in_flight.popleft())

    def _settle(self, submitted: _Submitted) -> None:
        """Record one batch's outcome (the oldest in flight), then checkpoint through it."""
        summary = self.summary
        try:
            result = submitted.future.result()
        except Exception as exc:
            self._update_counters()
            raise ImportAborted(
                f"import stopped at row {submitted.rows[0]}: {exc}", summary
            ) from exc
        for error in submitted.rejections:
            summary.rows_read += 1
            self._reject(error)
        rows = submitted.rows
        summary.rows_read += len(rows)
        summary.batches += 1
        summary.events_sent += len(rows)
        summary.events_accepted += result.accepted
        summary.duplicates += result.duplicates
        for index, reason in result.rejected:
            code, _, text = reason.partition(": ")
            if not (text and code.isidentifier()):
                code, text = "rejected", reason
            self._reject(RowError(rows[index], 0, "", code, text))
        self.blank_settled = submitted.blank
        self._checkpoint(submitted.through)

    def _checkpoint(self, through: int) -> None:
        self.summary.last_row = self.state.last_row = through
        self._update_counters()
        self._save_checkpoint()
        self._report_progress()
        if self.stop is not None and self.stop.is_set() and not self._stopping:
            self._cancel()

    def _cancel(self) -> None:
        """Stop at this checkpoint: settle the batches already committing (their rows are
        being stored anyway, so they are counted as stored, not re-sent as duplicates by a
        resumed run), then raise. Rejections held for the next batch are not released:
        they lie after the checkpoint, and a resumed run reports them."""
        self._stopping = True
        self._settle_all()
        raise ImportCancelled(f"import cancelled after row {self.summary.last_row}",
                              self.summary)

    def _update_counters(self) -> None:
        summary = self.summary
        summary.blank_rows = self.blank_before + self.blank_settled
        summary.rows_skipped = self.stats.skipped
        elapsed = time.monotonic() - self.started
        summary.elapsed_seconds = round(elapsed, 3)
        done = summary.rows_read - self.rows_before
        summary.rows_per_second = round(done / elapsed, 1) if elapsed > 0 else 0.0

    def _save_checkpoint(self) -> None:
        summary, state = self.summary, self.state
        state.error_report_bytes = self.report.size()
        state.counters = {name: getattr(summary, name) for name in ckpt.COUNTERS}
        state.rejected_by_reason = dict(summary.rejected_by_reason)
        try:
            ckpt.save(self.checkpoint_path, state)
        except OSError as exc:
            raise ImportAborted(f"cannot write the checkpoint: {exc}", summary) from exc

    def _report_progress(self) -> None:
        if self.progress is None:
            return
        summary = self.summary
        self.progress(ImportProgress(
            bytes_read=min(self.bytes_read(), self.total_bytes),
            total_bytes=self.total_bytes,
            rows_read=summary.rows_read,
            events_accepted=summary.events_accepted,
            rows_rejected=summary.rows_rejected,
            elapsed=time.monotonic() - self.started,
        ))
