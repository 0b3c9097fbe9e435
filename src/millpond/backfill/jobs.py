"""Imports uploaded to the server (``POST /api/imports``), run as background jobs.

The upload is written to the data dir first, so the import reads a stable file (the
fingerprint, checkpoints and resume all need one), and then runs in a worker thread with
a :class:`LogSink`. A running job can be cancelled: it stops at its next durable
checkpoint (``cancelled``; the rows stored so far stay). A ``failed``, ``interrupted``
(the server stopped under it) or ``cancelled`` job can be resumed from its checkpoint,
from the same uploaded file, which is kept until the job completes. A job, its progress
while it runs and its summary are kept in the import-job store, so any process can show
them; progress is saved at most every :data:`PROGRESS_EVERY` seconds. Each job says in
the server's log when it starts and how it ended, with its figures.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from millpond.backfill import (
    ImportAborted,
    ImportCancelled,
    ImportInputError,
    ImportOptions,
    choose_kind,
    preflight,
    run_import,
)
from millpond.backfill.forget import forget_import
from millpond.backfill.log_sink import LogSink
from millpond.errors import BadRequest, Conflict
from millpond.regulations.blocklist import Blocklist
from millpond.storage.contracts import EventLog, ImportJobStore
from millpond.storage.models import ImportJob, Source

log = logging.getLogger("millpond.imports")

#: Seconds between two saves of a running job's progress.
PROGRESS_EVERY = 0.5
#: Seconds a cancel waits for the import to reach its checkpoint and stop.
CANCEL_WAIT = 30.0
#: States a job can be resumed from (its checkpoint and upload are kept).
RESUMABLE = ("failed", "interrupted", "cancelled")
#: The largest upload taken (the API's and the console's), bytes.
MAX_UPLOAD_BYTES = 20 * 1024**3
#: Option fields that are paths (stored as text in the job).
_PATHS = ("errors_path", "state_dir")


class ImportRunning(Exception):
    """A deletion found an import running: it searches that import's files later."""


def job_dict(job: ImportJob) -> dict:
    """The public shape of an import job."""
    return {"id": job.id, "source_id": job.source_id, "kind": job.kind,
            "file": Path(job.file).name, "state": job.state, "progress": job.progress,
            "summary": job.summary, "error": job.error, "created_at": job.created_at}


class ImportJobs:
    def __init__(self, store: ImportJobStore, log: EventLog, data_dir: Path,
                 blocklist: Blocklist | None = None):
        self.store = store
        self.log = log
        #: Suppressed people, whose rows are rejected (``millpond.regulations``).
        self.blocklist = blocklist
        self.dir = data_dir / "imports"
        self.dir.mkdir(exist_ok=True)
        #: Running jobs of this process: the event that stops each, and its thread.
        self._running: dict[str, tuple[threading.Event, threading.Thread]] = {}
        self._lock = threading.Lock()
        # A server that stopped mid-import left jobs 'running': they resume from their
        # checkpoint when started again (``resume``); until then they read 'interrupted'.
        for job in store.list(limit=1_000_000):
            if job.state == "running":
                job.state, job.progress, job.updated_at = "interrupted", None, time.time()
                store.update(job)

    def upload_path(self, job_id: str, file_name: str) -> Path:
        safe = "".join(c for c in Path(file_name).name if c.isalnum() or c in "._-") or "upload"
        folder = self.dir / job_id
        folder.mkdir(exist_ok=True)
        return folder / safe

    @staticmethod
    def new_id() -> str:
        return "imp_" + secrets.token_hex(6)

    async def start_upload(self, source: Source, file_name: str, options: ImportOptions,
                           receive: Callable[[Path], Awaitable[int]],
                           kind: str | None = None) -> dict:
        """Store an upload (``receive`` writes it to the path given and returns its size),
        check it (:func:`preflight`) and start its job, as ``kind`` (None: chosen from
        the file, :func:`choose_kind`; ``options.kind`` is set to it).

        Why here, once, for the API and the console: an upload refused after it was
        written (empty, too large, cut off, a missing column, a source that takes no
        imports) must leave nothing behind. A customer export kept without a job would
        stay on disk for good, and no deletion would ever search it (:meth:`forget`
        searches the files of jobs). Raises :class:`ImportInputError` for a file that
        cannot be imported (each caller says so its own way). A source that takes no
        imports is refused before anything is received."""
        if source.kind not in ("import", "pipelines"):
            raise BadRequest(f"source {source.name!r} is a {source.kind} source; imports go to "
                             "an import or pipelines source", field="source")
        job_id = self.new_id()
        path = self.upload_path(job_id, file_name)
        try:
            if await receive(path) == 0:
                raise ImportInputError("the file is empty; send a CSV or JSONL file")
            options.display_name = file_name
            options.kind = kind or await asyncio.to_thread(choose_kind, path, options)
            await asyncio.to_thread(preflight, path, options)
        except BaseException:
            shutil.rmtree(path.parent, ignore_errors=True)
            raise
        return self.start(job_id, path, source, options)

    def start(self, job_id: str, path: Path, source: Source, options: ImportOptions) -> dict:
        """Start the job of an upload already checked (:meth:`start_upload`)."""
        options.source = source.id
        options.state_dir = path.parent
        options.errors_path = path.parent / "errors.csv"
        options.display_name = options.display_name or path.name
        now = time.time()
        job = ImportJob(job_id, source.id, options.kind, str(path), "running",
                        {k: str(v) if isinstance(v, Path) else v
                         for k, v in asdict(options).items()}, created_at=now, updated_at=now)
        self.store.create(job)
        log.info("import %s started: %s file %s into source %s", job_id, options.kind,
                 options.display_name, source.name,
                 extra=_fields(job_id, source, options, phase="started",
                               file_bytes=_size(path)))
        with self._lock:
            self._launch(job, path, source, options)
        return self.get(job_id)

    def cancel(self, job_id: str) -> dict:
        """Ask a running job to stop at its next checkpoint; Conflict unless it is running
        here. Returns at once (the job reads ``running`` until it has stopped: see
        :meth:`wait`)."""
        job = self.store.get(job_id)
        with self._lock:
            running = self._running.get(job_id)
        if job.state != "running" or running is None:
            raise Conflict(f"import {job_id} is {job.state}; only a running import can be "
                           "cancelled", field="state")
        running[0].set()
        log.info("import %s: cancel asked", job_id, extra={"import_id": job_id})
        return job_dict(job)

    def resume(self, job_id: str, source: Source) -> dict:
        """Start a failed, interrupted or cancelled job again from its checkpoint, reading
        the same uploaded file. Conflict when the job is running or completed, or when its
        upload is gone."""
        job = self.store.get(job_id)
        with self._lock:
            if job_id in self._running or job.state not in RESUMABLE:
                raise Conflict(f"import {job_id} is {job.state}; only a failed, interrupted "
                               "or cancelled import can be resumed", field="state")
            path = Path(job.file)
            if not path.is_file():
                raise Conflict(f"the uploaded file of import {job_id} ({path.name}) is gone; "
                               "upload it again (rows already imported are not stored twice)",
                               field="file")
            options = _options(job.options)
            job.state, job.error, job.progress = "running", None, None
            job.updated_at = time.time()
            self.store.update(job)
            log.info("import %s resumed: %s file %s into source %s", job_id, options.kind,
                     options.display_name, source.name,
                     extra=_fields(job_id, source, options, phase="resumed",
                                   file_bytes=_size(path)))
            self._launch(job, path, source, options)
        return self.get(job_id)

    def wait(self, job_id: str, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for this process's run of ``job_id`` to end;
        whether it has (True too when it is not running here)."""
        with self._lock:
            running = self._running.get(job_id)
        if running is None:
            return True
        running[1].join(timeout)
        return not running[1].is_alive()

    def _launch(self, job: ImportJob, path: Path, source: Source,
                options: ImportOptions) -> None:
        """Run the job in a new thread (the caller holds ``_lock``)."""
        stop = threading.Event()
        thread = threading.Thread(target=self._run, args=(job, path, source, options, stop),
                                  name=f"import-{job.id}", daemon=True)
        self._running[job.id] = (stop, thread)
        thread.start()

    def _run(self, job: ImportJob, path: Path, source: Source, options: ImportOptions,
             stop: threading.Event) -> None:
        try:
            self._import(job, path, source, options, stop)
        finally:
            with self._lock:
                self._running.pop(job.id, None)

    def _import(self, job: ImportJob, path: Path, source: Source, options: ImportOptions,
                stop: threading.Event) -> None:
        saved = 0.0

        def progress(p) -> None:
            nonlocal saved
            now = time.monotonic()
            if now - saved >= PROGRESS_EVERY:
                saved = now
                job.progress, job.updated_at = asdict(p), time.time()
                self.store.update(job)

        state, summary, error = "completed", None, None
        crash: Exception | None = None  # unexpected: the log line carries its traceback
        try:
            sink = LogSink(self.log, source.id, blocklist=self.blocklist)
            result = run_import(path, options, sink, progress, stop)
            summary = result.to_dict()
        except ImportCancelled as exc:
            state, error, summary = "cancelled", None, exc.summary.to_dict()
        except ImportInputError as exc:
            state, error = "failed", str(exc)
        except ImportAborted as exc:
            state, error, summary = "failed", str(exc), exc.summary.to_dict()
        except Exception as exc:  # noqa: BLE001 - the job records why it stopped
            state, error, crash = "failed", f"{type(exc).__name__}: {exc}", exc
        _log_end(job.id, source, options, state, summary, error, crash)
        if state == "completed":
            # The upload is a whole customer export: once imported it is only a liability.
            # The error report stays beside it; a failed import keeps its file to resume.
            path.unlink(missing_ok=True)
        job.state, job.summary, job.error, job.progress = state, summary or None, error, None
        job.updated_at = time.time()
        self.store.update(job)

    def forget(self, ids: Sequence[str]) -> int:
        """Remove the people's rows from every kept upload and error report (a
        regulation's deletion; :mod:`millpond.backfill.forget`); how many rows and report
        lines went. Raises :class:`ImportRunning` while an import runs here: its files are
        in use, and the deletion's step tries again once it has stopped."""
        removed = 0
        for job in self.store.list(limit=1_000_000):
            with self._lock:  # a resume waits: it must read the rewritten files
                if job.id in self._running:
                    raise ImportRunning(f"import {job.id} is running; its files are searched "
                                        "once it has stopped")
                removed += forget_import(Path(job.file), _options(job.options), ids)
        return removed

    def get(self, job_id: str) -> dict:
        return job_dict(self.store.get(job_id))

    def list(self) -> list[dict]:
        return [job_dict(j) for j in self.store.list(100)]


def _options(stored: dict[str, Any]) -> ImportOptions:
    """A job's :class:`ImportOptions` as :meth:`ImportJobs.start` stored them (paths as
    text; fields a later version dropped are ignored)."""
    known = {f.name for f in fields(ImportOptions)} - set(_PATHS)
    options = ImportOptions(**{k: v for k, v in stored.items() if k in known})
    errors, state = stored.get("errors_path"), stored.get("state_dir")
    options.errors_path = Path(errors) if errors else None
    options.state_dir = Path(state) if state else None
    return options


def _fields(job_id: str, source: Source, options: ImportOptions, **more) -> dict:
    """An import's structured log fields (``extra=``)."""
    return {"import_id": job_id, "source": source.name, "source_id": source.id,
            "kind": options.kind, "file": options.display_name, **more}


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _log_end(job_id: str, source: Source, options: ImportOptions, state: str,
             summary: dict | None, error: str | None, crash: Exception | None) -> None:
    """One line for how the import ended, with its figures when there are any."""
    figures = {}
    text = ""
    if summary:
        figures = {k: summary.get(k) for k in (
            "rows_read", "events_accepted", "duplicates", "rows_rejected", "elapsed_seconds",
            "rows_per_second", "already_completed")}
        text = (f"{summary['rows_read']:,} rows read, {summary['events_accepted']:,} events "
                f"stored, {summary['duplicates']:,} duplicates, {summary['rows_rejected']:,} "
                f"rows rejected in {summary['elapsed_seconds']:.1f} s "
                f"({summary['rows_per_second']:,.0f} rows/s)")
    fields = _fields(job_id, source, options, phase=state, error=error, **figures)
    if state == "completed":
        log.info("import %s completed: %s", job_id, text, extra=fields)
    elif state == "cancelled":
        log.info("import %s cancelled: %s; resume it to continue", job_id, text, extra=fields)
    else:
        log.error("import %s failed: %s%s", job_id, error, f" (so far: {text})" if text else "",
                  extra=fields, exc_info=crash)
