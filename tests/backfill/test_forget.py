"""A deletion over an interrupted import's files (``millpond.backfill.forget``): the
person's rows of the upload are blanked and their error-report lines dropped, so no byte
of them is left; the resume continues from its checkpoint (the fingerprint follows the
rewritten file), stores every other row exactly once and nothing of the person."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from millpond.backfill import ImportAborted, ImportOptions
from millpond.backfill.forget import forget_import
from tests.backfill.fakes import ListSink, read_report

ADA, SECRET, NEVER = "ada-4b1d", "zq4b1d@lovelace.example", "never-4b1d"


def _traces(root: Path) -> list[str]:
    return [f"{p.name} holds {n}" for p in root.rglob("*") if p.is_file()
            for n in (ADA, SECRET, NEVER) if n.encode() in p.read_bytes()]


def _interrupted(path: Path, run, **options) -> tuple[ListSink, int]:
    sink = ListSink(fail_on_batch=3)
    with pytest.raises(ImportAborted) as err:
        run(path, sink, batch_size=10, **options)
    return sink, err.value.summary.last_row


def test_a_csv_upload_loses_the_person_and_resumes_where_it_stopped(write, run, tmp_path):
    rows = [f"u{i},u{i}@x.io,2024-01-02T00:00:00Z" for i in range(60)]
    rows[3] = f'{ADA},"{SECRET}\r\nsecond line",2024-01-03T00:00:00Z'  # a quoted newline
    rows[5] = f"{ADA},{SECRET},{NEVER}"  # rejected: its time is quoted in the report
    rows[50] = f"{ADA},{SECRET},2024-01-04T00:00:00Z"
    path = write("id,email,ts\r\n" + "\r\n".join(rows) + "\r\n", bom=True)
    sink, last_row = _interrupted(path, run, timestamp_column="ts")
    assert 7 < last_row < 52 and _traces(tmp_path)
    report = path.with_name(path.name + ".errors.csv")
    assert any(NEVER in r["reason"] for r in read_report(report))

    options = ImportOptions(timestamp_column="ts", state_dir=tmp_path / "state")
    # her rows 5, 7 (settled: imported, reported) and 52 blanked, her report line dropped
    assert forget_import(path, options, [ADA]) == 4
    assert _traces(tmp_path) == []
    assert forget_import(path, options, [ADA]) == 0  # nothing left to find

    sink.events = [e for e in sink.events if e["userId"] != ADA]  # the events step's work
    summary = run(path, sink, batch_size=10, timestamp_column="ts")
    assert summary.completed and summary.resumed_after_row == last_row
    assert summary.duplicates == 0
    assert sorted(e["userId"] for e in sink.events) == sorted(
        f"u{i}" for i in range(60) if i not in (3, 5, 50))
    assert [r["row"] for r in read_report(report) if NEVER in r["reason"]] == []
    assert _traces(tmp_path) == []


def test_a_jsonl_upload_loses_the_person_by_user_or_anonymous_id(write, run, tmp_path):
    lines = [{"type": "track", "event": "E", "userId": f"u{i}", "timestamp":
              "2024-01-02T00:00:00Z", "properties": {"i": i}} for i in range(60)]
    lines[2] = {**lines[2], "userId": ADA, "properties": {"email": SECRET}}
    lines[40] = {"type": "track", "event": "E", "anonymousId": ADA,
                 "timestamp": "2024-01-02T00:00:00Z", "properties": {"email": SECRET}}
    lines[45] = {**lines[45], "properties": {"friend": ADA}}  # someone else's: kept
    path = write("".join(json.dumps(x) + "\n" for x in lines), name="events.jsonl")
    sink, last_row = _interrupted(path, run, kind="events")
    assert 3 < last_row < 41

    options = ImportOptions(kind="events", state_dir=tmp_path / "state")
    assert forget_import(path, options, [ADA]) == 2
    assert ADA.encode() in path.read_bytes() and SECRET.encode() not in path.read_bytes()

    sink.events = [e for e in sink.events if e.get("userId") != ADA]  # the events step
    summary = run(path, sink, batch_size=10, kind="events")
    assert summary.completed and summary.resumed_after_row == last_row
    assert summary.duplicates == 0
    assert not [e for e in sink.events if ADA in (e.get("userId"), e.get("anonymousId"))]
    assert len(sink.events) == 60 - 2  # hers after the checkpoint never went
