"""Checkpoints: interrupted imports resume after the last acknowledged batch, exactly once."""

from __future__ import annotations

import json

import pytest

from millpond.backfill import ImportAborted, ImportProgress
from tests.backfill.fakes import ListSink, read_report

ROWS = 95


@pytest.fixture
def people(write):
    return write("id,n\n" + "".join(f"u{i},{i}\n" for i in range(ROWS)))


def test_interrupted_import_resumes_and_delivers_every_row_once(people, run, tmp_path):
    sink = ListSink(fail_on_batch=3)
    with pytest.raises(ImportAborted, match="import stopped at row 22: sink went away") as err:
        run(people, sink, batch_size=10)
    partial = err.value.summary
    assert (partial.events_accepted, partial.last_row, partial.completed) == (20, 21, False)
    checkpoint = json.loads((tmp_path / "state" / "people.csv.millpond-import.json").read_text())
    assert checkpoint["last_row"] == 21 and checkpoint["completed"] is False

    sink.fail_on_batch = None
    sent_before = sum(sink.batches)
    summary = run(people, sink, batch_size=10)
    assert summary.completed
    assert summary.resumed_after_row == 21
    assert summary.rows_skipped == 20                 # acknowledged rows were not converted
    assert sum(sink.batches) - sent_before == ROWS - 20   # ...nor sent again
    assert summary.duplicates == 0
    assert summary.rows_read == ROWS and summary.events_accepted == ROWS
    ids = [e["messageId"] for e in sink.events]
    assert len(ids) == len(set(ids)) == ROWS
    assert sorted(e["traits"]["n"] for e in sink.events) == list(range(ROWS))


def test_lost_acknowledgement_is_resent_and_deduped(people, run):
    sink = ListSink(lose_ack_on_batch=2)
    with pytest.raises(ImportAborted):
        run(people, sink, batch_size=10)
    assert len(sink.events) == 20        # stored, but the runner never heard back
    sink.lose_ack_on_batch = None
    summary = run(people, sink, batch_size=10)
    assert summary.resumed_after_row == 11
    assert summary.duplicates == 10      # batch 2 again: same messageIds, nothing stored twice
    assert summary.events_accepted + summary.duplicates == summary.rows_read == ROWS
    assert len(sink.events) == len({e["messageId"] for e in sink.events}) == ROWS


def test_error_report_survives_resume_without_repeats(write, run):
    lines = "".join(f"u{i},{i}\n" if i % 7 else f",{i}\n" for i in range(60))
    path = write("id,n\n" + lines)
    sink = ListSink(fail_on_batch=4)
    with pytest.raises(ImportAborted):
        run(path, sink, batch_size=10)
    sink.fail_on_batch = None
    summary = run(path, sink, batch_size=10)
    bad_rows = [str(i + 2) for i in range(60) if i % 7 == 0]
    report = read_report(summary.error_report)
    assert [r["row"] for r in report] == bad_rows
    assert summary.rows_rejected == len(bad_rows)
    assert summary.rejected_by_reason == {"missing_id": len(bad_rows)}
    assert len(sink.events) == 60 - len(bad_rows)
    assert summary.rows_read == 60
    assert summary.events_accepted + summary.duplicates + summary.rows_rejected == 60


def test_finished_import_is_not_repeated_unless_asked(people, run):
    sink = ListSink()
    run(people, sink)
    calls = sink.calls
    again = run(people, sink)
    assert again.already_completed and again.completed
    assert again.events_accepted == ROWS and sink.calls == calls
    forced = run(people, sink, resume=False)
    assert not forced.already_completed
    assert (forced.events_accepted, forced.duplicates) == (0, ROWS)
    assert len(sink.events) == ROWS


def test_changed_file_starts_over(people, run):
    sink = ListSink(fail_on_batch=2)
    with pytest.raises(ImportAborted):
        run(people, sink, batch_size=10)
    people.write_text(people.read_text() + "u999,999\n")
    sink.fail_on_batch = None
    summary = run(people, sink, batch_size=10)
    assert summary.resumed_after_row == 0
    assert "starting from the first row" in summary.warnings[0]
    # The rows stored before the failure are the same rows: acknowledged, not stored again
    # (their ids come from their content, not from the file's); the rest and the new one are.
    stored_before = 10
    assert (summary.events_accepted, summary.duplicates) == (ROWS + 1 - stored_before,
                                                              stored_before)
    assert len({e["messageId"] for e in sink.events}) == ROWS + 1


def test_checkpoint_is_per_source(people, run):
    sink = ListSink(fail_on_batch=2)
    with pytest.raises(ImportAborted):
        run(people, sink, batch_size=10, source="crm")
    other = ListSink()
    summary = run(people, other, batch_size=10, source="web")
    assert summary.resumed_after_row == 0 and len(other.events) == ROWS


def test_checkpoint_defaults_next_to_the_error_report(people, tmp_path):
    from millpond.backfill import ImportOptions, run_import

    report = tmp_path / "reports" / "bad.csv"
    summary = run_import(people, ImportOptions(errors_path=report), ListSink())
    assert summary.checkpoint == str(tmp_path / "reports" / "people.csv.millpond-import.json")
    assert json.loads((tmp_path / "reports" / "people.csv.millpond-import.json").read_text())[
        "completed"] is True


def test_progress_reports_bytes_and_a_raising_callback_stops_cleanly(people, run):
    seen: list[ImportProgress] = []
    run(people, ListSink(), progress=seen.append, batch_size=10)
    assert [p.bytes_read for p in seen] == sorted(p.bytes_read for p in seen)
    assert seen[-1].bytes_read == seen[-1].total_bytes == people.stat().st_size
    assert seen[-1].rows_read == ROWS and seen[-1].events_accepted == ROWS

    class Cancelled(Exception):
        pass

    def cancel_after_three(p: ImportProgress) -> None:
        if p.events_accepted >= 30:
            raise Cancelled

    sink = ListSink()
    with pytest.raises(Cancelled):
        run(people, sink, progress=cancel_after_three, batch_size=10, resume=False)
    summary = run(people, sink, batch_size=10)
    assert summary.resumed_after_row == 31
    assert len(sink.events) == len({e["messageId"] for e in sink.events}) == ROWS


def test_resume_after_a_batch_closed_by_size_loses_no_row(write, run):
    # A batch closed because the next event would not fit ends *before* that row;
    # the checkpoint must not claim the row that opened the next batch.
    path = write("id,blob\n" + "".join(f"u{i},{'z' * (100 + 37 * (i % 5))}\n" for i in range(40)))
    sink = ListSink(fail_on_batch=3)
    with pytest.raises(ImportAborted):
        run(path, sink, max_batch_bytes=2_000, max_event_bytes=1_000)
    sink.fail_on_batch = None
    summary = run(path, sink, max_batch_bytes=2_000, max_event_bytes=1_000)
    assert summary.duplicates == 0 and summary.rows_read == 40
    assert sorted(int(e["userId"][1:]) for e in sink.events) == list(range(40))


def test_stop_cancels_at_a_checkpoint_and_resume_finishes_exactly_once(people, tmp_path):
    """``stop`` set mid-run: the import stops right after a saved checkpoint, with a summary
    that matches it; a resumed run sends only the rows after it."""
    import threading

    from millpond.backfill import ImportCancelled, ImportOptions, run_import

    stop = threading.Event()
    sink = ListSink()

    def progress(p: ImportProgress) -> None:
        if p.events_accepted >= 30:
            stop.set()

    options = ImportOptions(batch_size=10, state_dir=tmp_path / "state")
    with pytest.raises(ImportCancelled, match="cancelled after row 31") as err:
        run_import(people, options, sink, progress, stop)
    partial = err.value.summary
    assert (partial.events_accepted, partial.last_row, partial.completed) == (30, 31, False)
    checkpoint = json.loads((tmp_path / "state" / "people.csv.millpond-import.json").read_text())
    assert checkpoint["last_row"] == 31 and checkpoint["counters"]["events_accepted"] == 30
    assert len(sink.events) == 30

    summary = run_import(people, ImportOptions(batch_size=10, state_dir=tmp_path / "state"),
                         sink, None, threading.Event())
    assert summary.completed and summary.resumed_after_row == 31
    assert summary.duplicates == 0 and summary.events_accepted == summary.rows_read == ROWS
    ids = [e["messageId"] for e in sink.events]
    assert len(ids) == len(set(ids)) == ROWS


def test_stop_set_before_the_run_stops_after_its_first_batch(people, tmp_path):
    import threading

    from millpond.backfill import ImportCancelled, ImportOptions, run_import

    stop = threading.Event()
    stop.set()
    sink = ListSink()
    with pytest.raises(ImportCancelled) as err:
        run_import(people, ImportOptions(batch_size=10, state_dir=tmp_path / "s"), sink,
                   None, stop)
    assert err.value.summary.events_accepted == len(sink.events) == 10
