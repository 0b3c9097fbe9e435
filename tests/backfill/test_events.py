"""Events import: CSV (user / event / timestamp columns) and JSONL (Segment messages)."""

from __future__ import annotations

import json

import pytest

from millpond.backfill import ImportInputError, ImportOptions, preflight
from millpond.backfill.model import LIBRARY_NAME
from tests.backfill.fakes import ListSink, read_report


def test_csv_events_become_track_calls(write, run, sink):
    path = write("user_id,event,timestamp,price,currency,gift\n"
                 "u1,Order Completed,1359389415,23.45,EUR,false\n"
                 "u2,Signed Up,2024-05-01T12:00:00Z,,,\n", name="events.csv")
    summary = run(path, sink, kind="events")
    first, second = sink.events
    assert first["type"] == "track"
    assert (first["userId"], first["event"]) == ("u1", "Order Completed")
    assert first["timestamp"] == "2013-01-28T16:10:15.000Z"
    assert first["properties"] == {"price": 23.45, "currency": "EUR", "gift": False}
    assert second["properties"] == {}
    assert second["timestamp"] == "2024-05-01T12:00:00.000Z"
    assert first["context"]["import"] == {"file": "events.csv", "row": 2}
    assert summary.events_accepted == 2 and summary.kind == "events"


def test_csv_events_custom_columns_and_row_errors(write, run, sink):
    path = write("who;what;when;n\n"
                 "u1;Clicked;2024-01-01;1\n"
                 ";Clicked;2024-01-01;2\n"
                 "u3;;2024-01-01;3\n"
                 "u4;Clicked;soon;4\n"
                 "u5;Clicked;2024-01-02;5\n", name="events.csv")
    summary = run(path, sink, kind="events", user_column="who", event_column="what",
                  timestamp_column="when")
    assert [(e["userId"], e["properties"]) for e in sink.events] == [
        ("u1", {"n": 1}), ("u5", {"n": 5})]
    report = read_report(summary.error_report)
    assert [(r["row"], r["column"], r["code"]) for r in report] == [
        ("3", "who", "missing_user_id"), ("4", "what", "missing_event"),
        ("5", "when", "bad_timestamp")]


def test_csv_events_need_a_timestamp_column(write, sink):
    path = write("user_id,event\nu1,Clicked\n", name="events.csv")
    with pytest.raises(ImportInputError, match="no timestamp column.*--timestamp-column"):
        preflight(path, ImportOptions(kind="events"))


JSONL_LINES = [
    {"userId": "u1", "event": "Clicked", "timestamp": "2024-05-01T12:00:00Z",
     "properties": {"x": 1}},
    {"type": "identify", "userId": 42, "traits": {"plan": "gold"}, "messageId": "keep-me",
     "timestamp": 1714564800},
    {"type": "page", "anonymousId": "a1", "name": "Home",
     "context": {"library": {"name": "analytics.js", "version": "1"}, "ip": "1.2.3.4"}},
    {"type": "alias", "userId": "u1", "previousId": "a1", "timestamp": "1714564800"},
]


def _jsonl(*items: object) -> str:
    return "".join((item if isinstance(item, str) else json.dumps(item)) + "\n" for item in items)


def test_jsonl_valid_messages(write, run, sink):
    path = write(_jsonl(*JSONL_LINES), name="events.jsonl")
    seen = []
    summary = run(path, sink, kind="events", progress=seen.append)
    assert seen[-1].bytes_read == seen[-1].total_bytes == path.stat().st_size
    track, identify, page, alias = sink.events
    assert track["type"] == "track"                       # the default type
    assert track["timestamp"] == "2024-05-01T12:00:00Z"   # ISO strings are kept as sent
    assert len(track["messageId"]) == 36                  # deterministic id added
    assert identify["messageId"] == "keep-me"             # a given id is kept
    assert identify["userId"] == "42"
    assert identify["timestamp"] == "2024-05-01T12:00:00.000Z"   # Unix seconds → ISO
    assert alias["timestamp"] == "2024-05-01T12:00:00.000Z"
    assert page["context"]["library"] == {"name": "analytics.js", "version": "1"}
    assert page["context"]["ip"] == "1.2.3.4"
    assert page["context"]["import"] == {"file": "events.jsonl", "row": 3}
    assert track["context"]["library"]["name"] == LIBRARY_NAME
    assert summary.rows_read == 4 and summary.rows_rejected == 0


def test_jsonl_invalid_lines_are_reported_by_line(write, run, sink):
    path = write(_jsonl(
        JSONL_LINES[0],
        "{not json",
        "",
        "[1, 2]",
        {"event": "No identity"},
        {"userId": "u1"},
        {"type": "shout", "userId": "u1"},
        {"userId": "u1", "event": "E", "timestamp": "tomorrow"},
        {"userId": "u1", "event": "E", "properties": [1]},
        {"type": "group", "userId": "u1"},
        {"userId": "u1", "event": "E", "messageId": ""},
        JSONL_LINES[1],
    ), name="events.jsonl")
    summary = run(path, sink, kind="events")
    assert [e["userId"] for e in sink.events] == ["u1", "42"]
    report = read_report(summary.error_report)
    assert [(r["row"], r["column"], r["code"]) for r in report] == [
        ("2", "", "invalid_json"),
        ("4", "", "invalid_message"),
        ("5", "userId", "missing_id"),
        ("6", "event", "missing_event"),
        ("7", "type", "invalid_type"),
        ("8", "timestamp", "bad_timestamp"),
        ("9", "properties", "invalid_field"),
        ("10", "groupId", "missing_field"),
        ("11", "messageId", "invalid_field"),
    ]
    assert summary.blank_rows == 1
    assert summary.rows_read == 11


def test_jsonl_is_detected_by_content_and_refused_for_people(write, run, sink):
    path = write(_jsonl(JSONL_LINES[0]), name="export.txt")
    assert preflight(path, ImportOptions(kind="events", format="jsonl")).format == "jsonl"
    path = write(_jsonl(JSONL_LINES[0]), name="export.dat")
    assert preflight(path, ImportOptions(kind="events")).format == "jsonl"
    with pytest.raises(ImportInputError, match="people import takes a CSV file"):
        run(write(_jsonl(JSONL_LINES[0]), name="people.jsonl"), sink)


def test_jsonl_rerun_gives_the_same_ids(write, run):
    path = write(_jsonl(*JSONL_LINES), name="events.jsonl")
    first, second = ListSink(), ListSink()
    run(path, first, kind="events")
    run(path, second, kind="events", resume=False)
    assert [e["messageId"] for e in first.events] == [e["messageId"] for e in second.events]
