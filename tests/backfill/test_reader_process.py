"""Imports into the log read in a reader process: same outcome as in-process, always reaped.

Real child processes (``spawn``), a real SQLite log: the reader is killed, cancelled and
made to raise, and every time the import stops cleanly, the child is gone and a re-run
stores every row exactly once.
"""

from __future__ import annotations

import csv
import os
import signal
import sqlite3
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import psutil
import pytest

import millpond.backfill.runner as runner
from millpond.backfill import (
    ImportAborted,
    ImportInputError,
    ImportOptions,
    ImportProgress,
    SinkResult,
    run_import,
)
from millpond.backfill.log_sink import LogSink
from millpond.backfill.reader_process import ReaderProcess
from millpond.storage.sqlite.log import SQLiteEventLog
from tests.backfill.test_log_sink import STOPPED_CLOCK, stored_rows

SOURCE = "src_import"


@pytest.fixture
def readers(monkeypatch) -> list[ReaderProcess]:
    """Every reader process the runner starts, to check on it afterwards."""
    started: list[ReaderProcess] = []

    class Recorded(ReaderProcess):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            started.append(self)

    monkeypatch.setattr(runner, "ReaderProcess", Recorded)
    return started


def assert_reaped(readers: list[ReaderProcess]) -> None:
    assert readers, "the import did not use a reader process"
    for reader in readers:
        # A zombie (exited, not waited for) would still have its pid.
        assert not psutil.pid_exists(reader.pid), f"reader {reader.pid} is still there"


def people(write, rows: int) -> Path:
    bad = {5, 6, 7, 300}  # no id: the runner's own rejections, mixed between batches
    lines = "".join(f",{i},x\n" if i in bad else f"u{i},{i},{'y' * (i % 50)}\n"
                    for i in range(rows))
    return write("id,n,note\n" + lines + "\n\n")


def log_count(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT COUNT(*), COUNT(DISTINCT message_id) FROM events").fetchone()


def dedupe_rows(path: Path) -> list[tuple[int, int]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT h, seq FROM dedupe UNION ALL"  # any table
                            " SELECT h, seq FROM dedupe_runs UNION ALL"
                            " SELECT h, seq FROM dedupe_recent ORDER BY seq").fetchall()


def comparable(summary: Any) -> dict[str, Any]:
    data = summary.to_dict()
    for volatile in ("elapsed_seconds", "rows_per_second", "checkpoint", "error_report"):
        data.pop(volatile)
    return data


def report_rows(summary: Any) -> list[list[str]]:
    with open(summary.error_report, encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


@pytest.mark.parametrize(("kind", "text", "extra"), [
    ("people", None, {}),
    ("events", '{"type":"track","userId":"u1","event":"A","timestamp":"2024-05-01T00:00:00Z"}\n'
               "not json\n\n"
               '{"type":"identify","userId":"u2","traits":{"plan":"pro"}}\n'
               '{"type":"track","userId":"u3"}\n'
               '{"type":"page","anonymousId":"a1","messageId":"m-1","properties":{"x":1}}\n'
               '{"type":"track","userId":"u4","event":"B","timestamp":"soon"}\n',
     {"format": "jsonl"}),
])
def test_the_reader_process_imports_exactly_what_the_in_process_reader_does(
        write, tmp_path, readers, kind, text, extra):
    path = people(write, 2_000) if text is None else write(text, name="events.jsonl")
    outcome = {}
    for mode in ("process", "inline"):
        log = SQLiteEventLog(tmp_path / f"{mode}.db")
        sink = LogSink(log, SOURCE, batch_size=150, reader_process=mode == "process",
                       clock=STOPPED_CLOCK)
        summary = run_import(path, ImportOptions(kind=kind, state_dir=tmp_path / mode,
                                                 errors_path=tmp_path / mode / "errors.csv",
                                                 **extra), sink)
        log.close()
        db = tmp_path / f"{mode}.db"
        outcome[mode] = (comparable(summary), report_rows(summary), stored_rows(db),
                         dedupe_rows(db))
    assert outcome["process"] == outcome["inline"]
    summary, report, stored, claimed = outcome["process"]
    assert len(claimed) == len(stored)  # the reader's dedupe keys are the log's own
    assert summary["rows_rejected"] == len(report) - 1 > 0
    assert summary["events_accepted"] == len(stored) > 0
    assert len(readers) == 1
    assert_reaped(readers)


def test_a_long_run_of_bad_rows_crosses_in_several_messages(write, tmp_path, readers):
    # More rejected rows in a row than the child holds back (4096) before sending them.
    path = write("id,n\n" + "u0,0\n" + ",x\n" * 9_000 + "u1,1\n")
    log = SQLiteEventLog(tmp_path / "log.db")
    summary = run_import(path, ImportOptions(state_dir=tmp_path / "state"),
                         LogSink(log, SOURCE, batch_size=1))
    log.close()
    assert (summary.rows_read, summary.events_accepted, summary.rows_rejected) == (
        9_002, 2, 9_000)
    assert [int(row[0]) for row in report_rows(summary)[1:]] == list(range(3, 9_003))
    assert_reaped(readers)


class Cancelled(Exception):
    pass


def test_a_cancelled_import_stops_its_reader_and_resumes(write, tmp_path, readers):
    path = people(write, 20_000)
    log = SQLiteEventLog(tmp_path / "log.db")
    options = ImportOptions(state_dir=tmp_path / "state", batch_size=200)

    def cancel(progress: ImportProgress) -> None:
        if progress.events_accepted:
            raise Cancelled

    with pytest.raises(Cancelled):
        run_import(path, options, LogSink(log, SOURCE), cancel)
    assert_reaped(readers)
    stored_before = log_count(tmp_path / "log.db")[0]
    assert 0 < stored_before < 19_996

    summary = run_import(path, options, LogSink(log, SOURCE))
    assert summary.completed and summary.resumed_after_row > 1
    assert summary.rows_skipped == summary.resumed_after_row - 1  # the reader's count
    assert summary.rows_read == 20_000 and summary.rows_rejected == 4
    assert summary.events_accepted + summary.duplicates == 19_996
    log.close()
    assert log_count(tmp_path / "log.db") == (19_996, 19_996)  # every row once
    assert_reaped(readers)


def test_a_killed_reader_aborts_the_import_cleanly_and_a_rerun_completes(write, tmp_path,
                                                                         readers):
    path = people(write, 20_000)
    log = SQLiteEventLog(tmp_path / "log.db")
    options = ImportOptions(state_dir=tmp_path / "state", batch_size=200)

    def kill_reader(progress: ImportProgress) -> None:
        if progress.events_accepted and readers[0].pid and psutil.pid_exists(readers[0].pid):
            os.kill(readers[0].pid, signal.SIGKILL)

    with pytest.raises(ImportAborted, match=r"reader process stopped unexpectedly "
                                            r"\(killed by SIGKILL\)") as err:
        run_import(path, options, LogSink(log, SOURCE), kill_reader)
    partial = err.value.summary
    assert 0 < partial.last_row < 20_001 and not partial.completed
    assert_reaped(readers)

    summary = run_import(path, options, LogSink(log, SOURCE))
    assert summary.resumed_after_row == partial.last_row
    assert summary.events_accepted + summary.duplicates == 19_996
    log.close()
    assert log_count(tmp_path / "log.db") == (19_996, 19_996)
    assert len(readers) == 2
    assert_reaped(readers)


# -- errors raised in the reader process ----------------------------------------------

class TwoPartError(Exception):
    """Does not survive pickling (its __init__ wants two arguments, args holds one)."""

    def __init__(self, what: str, where: int):
        super().__init__(f"{what} at {where}")


def explode_at_row_50(events: list[dict[str, Any]], encoded: list[bytes]) -> int:
    if any(event["context"]["import"]["row"] == 50 for event in events):
        raise ImportInputError("people.csv changed while it was being imported")
    return len(events)


def explode_strangely(events: list[dict[str, Any]], encoded: list[bytes]) -> int:
    raise TwoPartError("cannot prepare", 7)


class PreparingCountSink:
    """A preparing sink whose preparer (running in the reader process) may raise."""

    reader_process = True
    max_in_flight = 2
    batch_size = 10

    def __init__(self, preparer: Any):
        self._preparer = preparer
        self.accepted = 0

    def preparer(self) -> Any:
        return self._preparer

    def send(self, events: list[dict[str, Any]]) -> SinkResult:
        raise AssertionError("the reader process prepares every batch")

    def submit(self, events: list[dict[str, Any]], encoded: list[bytes]) -> Future[SinkResult]:
        raise AssertionError("the reader process prepares every batch")

    def submit_prepared(self, prepared: int) -> Future[SinkResult]:
        self.accepted += prepared
        done: Future[SinkResult] = Future()
        done.set_result(SinkResult(prepared))
        return done


def test_an_exception_in_the_reader_reaches_the_caller_as_itself(write, run, readers):
    path = write("id,n\n" + "".join(f"u{i},{i}\n" for i in range(100)))
    sink = PreparingCountSink(explode_at_row_50)
    with pytest.raises(ImportInputError) as err:
        run(path, sink)
    assert str(err.value) == "people.csv changed while it was being imported"  # the user's view
    assert any("raised in the import's reader process" in note
               for note in err.value.__notes__)
    assert sink.accepted == 40  # the batches before the one that failed
    assert_reaped(readers)


def test_an_exception_that_cannot_cross_is_reported_by_its_text(write, run, readers):
    path = write("id,n\nu1,1\n")
    with pytest.raises(RuntimeError) as err:
        run(path, PreparingCountSink(explode_strangely))
    assert str(err.value) == "TwoPartError: cannot prepare at 7"
    assert_reaped(readers)
