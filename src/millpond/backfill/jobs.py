"""Imports uploaded to the server (``POST /api/imports``), run as background jobs.

The upload is written to the data dir first, so the import reads a stable file (the
fingerprint, checkpoints and resume all need one), and then runs in a worker thread
with a :class:`LogSink`. A job's summary is kept in state.db; progress lives in memory
while it runs. Each job says in the server's log when it starts and how it ended, with
its figures.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from dataclasses import asdict
from pathlib import Path

from millpond.backfill import ImportAborted, ImportInputError, ImportOptions, run_import
from millpond.backfill.log_sink import LogSink
from millpond.errors import BadRequest, NotFound
from millpond.log.base import EventLog
from millpond.sources.store import Source
from millpond.state import StateDB

log = logging.getLogger("millpond.imports")

SCHEMA = """
CREATE TABLE IF NOT EXISTS imports (
    id TEXT PRIMARY KEY,
    source_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    file TEXT NOT NULL,
    state TEXT NOT NULL,
    options TEXT NOT NULL,
    summary TEXT,
    error TEXT,
    created_at REAL NOT NULL
);
"""


class ImportJobs:
    def __init__(self, db: StateDB, log: EventLog, data_dir: Path):
        self.db = db
        self.log = log
        self.dir = data_dir / "imports"
        self.dir.mkdir(exist_ok=True)
        db.executescript(SCHEMA)
        self._progress: dict[str, dict] = {}
        # A server that stopped mid-import left jobs 'running': they resume from their
        # checkpoint when started again (``resume``); until then they read 'interrupted'.
        db.conn().execute("UPDATE imports SET state = 'interrupted' WHERE state = 'running'")

    def upload_path(self, job_id: str, file_name: str) -> Path:
        safe = "".join(c for c in Path(file_name).name if c.isalnum() or c in "._-") or "upload"
        folder = self.dir / job_id
        folder.mkdir(exist_ok=True)
        return folder / safe

    @staticmethod
    def new_id() -> str:
        return "imp_" + secrets.token_hex(6)

    def start(self, job_id: str, path: Path, source: Source, options: ImportOptions) -> dict:
        if source.kind not in ("import", "pipelines"):
            raise BadRequest(f"source {source.name!r} is a {source.kind} source; imports go to "
                             "an import or pipelines source", field="source")
        options.source = source.id
        options.state_dir = path.parent
        options.errors_path = path.parent / "errors.csv"
        options.display_name = options.display_name or path.name
        self.db.conn().execute(
            "INSERT OR REPLACE INTO imports VALUES (?,?,?,?,?,?,?,?,?)",
            (job_id, source.id, options.kind, str(path), "running",
             json.dumps({k: str(v) if isinstance(v, Path) else v
                         for k, v in asdict(options).items()}), None, None, time.time()))
        log.info("import %s started: %s file %s into source %s", job_id, options.kind,
                 options.display_name, source.name,
                 extra=_fields(job_id, source, options, phase="started",
                               file_bytes=_size(path)))
        thread = threading.Thread(target=self._run, args=(job_id, path, source, options),
                                  name=f"import-{job_id}", daemon=True)
        thread.start()
        return self.get(job_id)

    def _run(self, job_id: str, path: Path, source: Source, options: ImportOptions) -> None:
        def progress(p) -> None:
            self._progress[job_id] = asdict(p)

        state, summary, error = "completed", None, None
        crash: Exception | None = None  # unexpected: the log line carries its traceback
        try:
            result = run_import(path, options, LogSink(self.log, source.id), progress)
            summary = result.to_dict()
        except ImportInputError as exc:
            state, error = "failed", str(exc)
        except ImportAborted as exc:
            state, error, summary = "failed", str(exc), exc.summary.to_dict()
        except Exception as exc:  # noqa: BLE001 - the job records why it stopped
            state, error, crash = "failed", f"{type(exc).__name__}: {exc}", exc
        _log_end(job_id, source, options, state, summary, error, crash)
        if state == "completed":
            # The upload is a whole customer export: once imported it is only a liability.
            # The error report stays beside it; a failed import keeps its file to resume.
            path.unlink(missing_ok=True)
        self.db.conn().execute(
            "UPDATE imports SET state = ?, summary = ?, error = ? WHERE id = ?",
            (state, json.dumps(summary) if summary else None, error, job_id))
        self._progress.pop(job_id, None)

    def get(self, job_id: str) -> dict:
        row = self.db.conn().execute("SELECT * FROM imports WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"no import {job_id!r}", field="id")
        return self._row(row)

    def list(self) -> list[dict]:
        rows = self.db.conn().execute("SELECT * FROM imports ORDER BY created_at DESC LIMIT 100")
        return [self._row(r) for r in rows]

    def _row(self, row) -> dict:
        return {"id": row["id"], "source_id": row["source_id"], "kind": row["kind"],
                "file": Path(row["file"]).name, "state": row["state"],
                "progress": self._progress.get(row["id"]),
                "summary": json.loads(row["summary"]) if row["summary"] else None,
                "error": row["error"], "created_at": row["created_at"]}


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
    else:
        log.error("import %s failed: %s%s", job_id, error, f" (so far: {text})" if text else "",
                  extra=fields, exc_info=crash)
