"""People CSV → identify events, into an in-memory sink."""

from __future__ import annotations

import json
import uuid

import msgspec
import pytest

from millpond.backfill import ImportInputError, ImportOptions, preflight
from millpond.backfill.model import LIBRARY_NAME, LIBRARY_VERSION
from tests.backfill.fakes import ListSink, read_report


def by_user(sink: ListSink) -> dict[str, dict]:
    return {e["userId"]: e for e in sink.events}


def test_identify_event_shape(write, run, sink):
    path = write("id,name,plan\nu1,Ann,gold\n")
    summary = run(path, sink)
    [event] = sink.events
    assert set(event) == {"type", "userId", "traits", "messageId", "context"}  # no timestamp
    assert event["type"] == "identify"
    assert event["userId"] == "u1"
    assert event["traits"] == {"name": "Ann", "plan": "gold"}
    assert uuid.UUID(event["messageId"]).version == 8
    assert event["context"] == {
        "library": {"name": LIBRARY_NAME, "version": LIBRARY_VERSION},
        "import": {"file": "people.csv", "row": 2},
    }
    assert (summary.rows_read, summary.events_accepted, summary.rows_rejected) == (1, 1, 0)
    assert summary.completed and summary.error_report is None


def test_utf8_bom_is_not_part_of_the_first_column(write, run, sink):
    path = write("id,name\nu1,Zoë\n", bom=True)
    run(path, sink)
    assert sink.events[0]["userId"] == "u1"
    assert sink.events[0]["traits"] == {"name": "Zoë"}


def test_quoted_fields_with_newlines_delimiters_and_quotes(write, run, sink):
    path = write('id,note,city\r\nu1,"line one\nline two, with comma","Paris"\r\n'
                 'u2,"she said ""hi""",Oslo\r\n')
    run(path, sink)
    users = by_user(sink)
    assert users["u1"]["traits"]["note"] == "line one\nline two, with comma"
    assert users["u2"]["traits"]["note"] == 'she said "hi"'
    # A record spanning two lines is still one spreadsheet row.
    assert users["u2"]["context"]["import"]["row"] == 3


@pytest.mark.parametrize(("text", "delimiter"), [
    ("id;name;score\nu1;Ann;1,5\nu2;Bob;2,5\n", ";"),
    ("id\tname\tscore\nu1\tAnn\t1,5\nu2\tBob\t2,5\n", "\t"),
    ("id|name|score\nu1|Ann|1,5\nu2|Bob|2,5\n", "|"),
])
def test_delimiter_is_sniffed(write, run, sink, text, delimiter):
    path = write(text)
    assert preflight(path, ImportOptions()).delimiter == delimiter
    run(path, sink)
    assert by_user(sink)["u1"]["traits"] == {"name": "Ann", "score": "1,5"}


def test_explicit_delimiter_wins_over_sniffing(write, run, sink):
    path = write("id;a,b\nu1;x,y\n")
    run(path, sink, delimiter=";")
    assert sink.events[0]["userId"] == "u1"
    assert sink.events[0]["traits"] == {"a,b": "x,y"}
    with pytest.raises(ImportInputError, match="columns found: 'id;a', 'b'"):
        run(path, ListSink(), delimiter=",", resume=False)


def test_missing_id_goes_to_the_error_report_and_the_import_continues(write, run, sink):
    path = write("user_id,name\nu1,Ann\n,Nobody\n  ,Spaces\nu4,Dee\n")
    summary = run(path, sink)
    assert [e["userId"] for e in sink.events] == ["u1", "u4"]
    assert summary.rows_rejected == 2
    assert summary.rejected_by_reason == {"missing_id": 2}
    rows = read_report(summary.error_report)
    assert [(r["row"], r["column"], r["code"]) for r in rows] == [
        ("3", "user_id", "missing_id"), ("4", "user_id", "missing_id")]
    assert rows[0]["reason"] == "user_id is empty"


def test_wrong_column_count_is_rejected(write, run, sink):
    path = write("id,name\nu1,Ann\nu2,Bob,extra\nu3\nu4,Dee\n")
    summary = run(path, sink)
    assert [e["userId"] for e in sink.events] == ["u1", "u4"]
    reasons = [(r["row"], r["code"], r["reason"]) for r in read_report(summary.error_report)]
    assert reasons == [("3", "column_count", "expected 2 columns, found 3"),
                       ("4", "column_count", "expected 2 columns, found 1")]


def test_duplicate_ids_keep_their_own_timestamps(write, run, sink):
    path = write("id,plan,updated\n"
                 "u1,free,2024-01-01T00:00:00Z\n"
                 "u1,gold,1714564800\n")
    run(path, sink, timestamp_column="updated")
    first, second = sink.events
    assert (first["userId"], second["userId"]) == ("u1", "u1")
    assert first["timestamp"] == "2024-01-01T00:00:00.000Z"
    assert first["traits"]["_timestamp"] == 1704067200
    assert second["timestamp"] == "2024-05-01T12:00:00.000Z"
    assert second["traits"]["_timestamp"] == 1714564800
    assert first["messageId"] != second["messageId"]
    # The timestamp column is kept as a trait too (typed like any other cell).
    assert second["traits"]["updated"] == 1714564800


def test_bad_dates_are_rejected_with_a_reason(write, run, sink):
    path = write("id,updated\nu1,2024-01-01\nu2,next tuesday\nu3,\nu4,1714564800000\n"
                 "u5,1714564800\n")
    summary = run(path, sink, timestamp_column="updated")
    assert [e["userId"] for e in sink.events] == ["u1", "u5"]
    report = read_report(summary.error_report)
    assert [(r["row"], r["column"], r["code"]) for r in report] == [
        ("3", "updated", "bad_timestamp"),
        ("4", "updated", "missing_timestamp"),
        ("5", "updated", "bad_timestamp")]
    assert "next tuesday" in report[0]["reason"]
    assert "milliseconds" in report[2]["reason"]
    assert summary.rejected_by_reason == {"bad_timestamp": 2, "missing_timestamp": 1}


def test_blank_lines_are_ignored_but_keep_row_numbers(write, run, sink):
    path = write("\n\nid,name\n\nu1,Ann\n,\n   \n\nu2,Bob\n\n")
    summary = run(path, sink)
    assert [(e["userId"], e["context"]["import"]["row"]) for e in sink.events] == [
        ("u1", 5), ("u2", 9)]
    assert summary.rows_rejected == 0
    assert summary.blank_rows == 5
    assert summary.rows_read == 2


def test_type_inference_versus_text(write, run):
    text = ("id,age,score,vip,joined,zip,big\n"
            "u1,33,1.5,true,2024-01-05T10:00:00Z,00123,12345678901234567890\n")
    inferred, texted = ListSink(), ListSink()
    run(write(text), inferred)
    run(write(text), texted, types="text", resume=False)
    assert inferred.events[0]["traits"] == {
        "age": 33, "score": 1.5, "vip": True, "joined": "2024-01-05T10:00:00.000Z",
        "zip": "00123", "big": "12345678901234567890"}
    assert texted.events[0]["traits"] == {
        "age": "33", "score": "1.5", "vip": "true", "joined": "2024-01-05T10:00:00Z",
        "zip": "00123", "big": "12345678901234567890"}
    # Different shaping options → different messageIds (a corrected re-import is not deduped).
    assert inferred.events[0]["messageId"] != texted.events[0]["messageId"]


def test_text_mode_keeps_cells_verbatim(write, run, sink):
    run(write("id,name\nu1,  padded  \n"), sink, types="text")
    assert sink.events[0]["traits"] == {"name": "  padded  "}


@pytest.mark.parametrize(("empty", "expected"), [
    ("skip", {"name": "Ann"}),
    ("clear", {"name": "Ann", "plan": None, "age": None}),
])
def test_empty_cells_skip_or_clear(write, run, sink, empty, expected):
    run(write("id,name,plan,age\nu1,Ann,, \n"), sink, empty=empty)
    assert sink.events[0]["traits"] == expected


def test_default_id_column_is_found_case_insensitively(write, run, sink):
    run(write("Name,UserId,Plan\nAnn,u1,gold\n"), sink)
    assert sink.events[0]["userId"] == "u1"
    assert sink.events[0]["traits"] == {"Name": "Ann", "Plan": "gold"}


def test_email_id_column_stays_a_trait(write, run, sink):
    run(write("email,name\nann@example.com,Ann\n"), sink)
    event = sink.events[0]
    assert event["userId"] == "ann@example.com"
    assert event["traits"] == {"email": "ann@example.com", "name": "Ann"}


def test_explicit_id_column(write, run, sink):
    run(write("id,crm_key,name\n1,K-9,Ann\n"), sink, id_column="crm_key")
    assert sink.events[0]["userId"] == "K-9"
    assert sink.events[0]["traits"] == {"id": 1, "name": "Ann"}


@pytest.mark.parametrize(("text", "options", "message"), [
    ("name,plan\nAnn,gold\n", {}, "no id column (looked for id / user_id / userId / email); "
                                  "columns found: 'name', 'plan'; use --id-column"),
    ("id,plan\n1,gold\n", {"id_column": "key"}, "unknown id column 'key'; columns found: "
                                                "'id', 'plan'"),
    ("id,plan\n1,gold\n", {"timestamp_column": "at"}, "unknown timestamp column 'at'"),
    ("id,plan,plan\n1,a,b\n", {}, "duplicate column name 'plan'"),
    ('{"userId": "u1"}\n', {}, "looks like JSON"),
    ("\n\n\n", {}, "no header row"),
    ("id\n1\n", {"types": "guess"}, "--types must be 'infer' or 'text'"),
    ("id\n1\n", {"empty": "drop"}, "--empty must be 'skip' or 'clear'"),
    ("id\n1\n", {"batch_size": 0}, "--batch-size must be at least 1"),
])
def test_unusable_input_is_refused_before_sending(write, run, sink, text, options, message):
    with pytest.raises(ImportInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run(write(text), sink, **options)
    assert sink.calls == 0


@pytest.mark.parametrize(("data", "message"), [
    (b"", "file is empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file"),
    (b"id,name\nu1,Ren\xe9e\n", r"not UTF-8 \(invalid byte at offset 14\)"),
])
def test_not_a_csv(write, run, sink, data, message):
    with pytest.raises(ImportInputError, match=message):
        run(write(data), sink)
    assert sink.calls == 0


def test_missing_file(tmp_path, run, sink):
    with pytest.raises(ImportInputError, match="file not found"):
        run(tmp_path / "nope.csv", sink)


def test_unnamed_columns_are_ignored_with_a_warning(write, run, sink):
    summary = run(write("id,name,\nu1,Ann,\n"), sink)
    assert sink.events[0]["traits"] == {"name": "Ann"}
    assert summary.warnings == ["column 3 has no name in the header and is ignored"]


def test_batches_respect_count_and_encoded_size(write, run):
    rows = "".join(f"u{i},{'x' * 300}\n" for i in range(50))
    path = write("id,blob\n" + rows)
    by_count = ListSink()
    run(path, by_count, batch_size=7)
    assert by_count.batches == [7] * 7 + [1]
    by_size = ListSink()
    limit = 4_000
    sent: list[int] = []

    class Measuring(ListSink):
        def send(self, events):
            sent.append(len(msgspec.json.encode({"batch": events})))
            return super().send(events)

    by_size = Measuring()
    summary = run(path, by_size, resume=False, max_batch_bytes=limit, max_event_bytes=1_000)
    assert summary.events_accepted == 50
    assert max(sent) <= limit
    assert len(sent) > 1 and all(n > limit / 2 for n in sent[:-1])  # batches are filled


def test_oversized_event_is_rejected_not_sent(write, run, sink):
    path = write(f"id,blob\nu1,small\nu2,{'y' * 2000}\nu3,small\n")
    summary = run(path, sink, max_event_bytes=1_000)
    assert [e["userId"] for e in sink.events] == ["u1", "u3"]
    [row] = read_report(summary.error_report)
    assert (row["row"], row["code"]) == ("3", "too_large")


def test_sink_rejections_land_in_the_error_report(write, run):
    sink = ListSink(reject=lambda e: "invalid_field: no VIPs" if e["traits"].get("vip") else None)
    summary = run(write("id,vip\nu1,false\nu2,true\nu3,false\n"), sink)
    assert [e["userId"] for e in sink.events] == ["u1", "u3"]
    assert summary.events_accepted == 2
    assert summary.rejected_by_reason == {"invalid_field": 1}
    [row] = read_report(summary.error_report)
    assert (row["row"], row["code"], row["reason"]) == ("3", "invalid_field", "no VIPs")


def test_same_file_same_message_ids_and_renaming_does_not_matter(write, run):
    text = "id,name\nu1,Ann\nu2,Bob\n"
    first, second = ListSink(), ListSink()
    run(write(text, name="a.csv"), first)
    run(write(text, name="b.csv"), second)
    assert [e["messageId"] for e in first.events] == [e["messageId"] for e in second.events]
    assert second.events[0]["context"]["import"]["file"] == "b.csv"


def test_display_name_is_recorded_as_the_file(write, run, sink):
    run(write("id\nu1\n", name="upload-tmp-123.csv"), sink, display_name="customers.csv")
    assert sink.events[0]["context"]["import"]["file"] == "customers.csv"


def test_summary_to_dict_is_json(write, run, sink):
    summary = run(write("id\nu1\n,\n"), sink)
    data = json.loads(json.dumps(summary.to_dict()))
    assert data["rows_read"] == 1 and data["completed"] is True and data["kind"] == "people"


def test_malformed_record_is_rejected_and_reading_goes_on(write, run, sink):
    # A cell over the csv module's field size limit (128 KiB) is a csv.Error for that record.
    summary = run(write(f"id,blob\nu1,a\nu2,{'x' * 200_000}\nu3,b\n"), sink)
    assert [e["userId"] for e in sink.events] == ["u1", "u3"]
    [row] = read_report(summary.error_report)
    assert (row["row"], row["code"]) == ("3", "malformed_csv")
    assert "field larger than field limit" in row["reason"]
