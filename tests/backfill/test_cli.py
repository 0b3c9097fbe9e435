"""``millpond import people|events``: argument errors are one message, imports go end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from millpond.cli.imports import import_group
from tests.backfill.fakes import FakeCollector
from tests.support.server import ADMIN_TOKEN


def invoke(collector: FakeCollector | None, *args: str) -> Result:
    url = collector.url if collector else "http://127.0.0.1:9"
    return CliRunner().invoke(import_group, ["--url", url, "--token", ADMIN_TOKEN, *args])


def error_line(result: Result) -> str:
    """The single error message (rich may wrap it at the console width), checked for shape."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.output.count("error:") == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return " ".join(result.output.split())


@pytest.fixture
def people(write) -> Path:
    return write("id,name,plan\nu1,Ann,gold\nu2,Bob,free\n,Nobody,x\n")


def test_missing_file():
    result = invoke(None, "people", "/no/such/file.csv", "--source", "crm")
    assert error_line(result) == "error: file not found: /no/such/file.csv"


def test_unknown_column_lists_the_columns(people):
    result = invoke(None, "people", str(people), "--source", "crm", "--id-column", "key")
    assert error_line(result) == (
        "error: unknown id column 'key'; columns found: 'id', 'name', 'plan'")


def test_events_without_a_user_column(write):
    path = write("who,event,timestamp\nu1,E,1\n", name="events.csv")
    result = invoke(None, "events", str(path), "--source", "crm")
    assert "no user id column (looked for user_id / userId); columns found: 'who', 'event', " \
           "'timestamp'; use --user-column" in error_line(result)


def test_not_a_csv(write):
    path = write(b"\x00\x01\x02binary", name="data.csv")
    assert "data.csv is a binary file" in error_line(invoke(None, "people", str(path),
                                                            "--source", "crm"))


def test_bad_option_value(people):
    result = invoke(None, "people", str(people), "--source", "crm", "--types", "guess")
    assert "--types must be 'infer' or 'text'" in error_line(result)


def test_missing_source_option_is_a_usage_error(people):
    result = invoke(None, "people", str(people))
    assert result.exit_code == 2 and "Missing option '--source'" in result.output
    assert "Traceback" not in result.output


def test_server_unreachable(people):
    assert "cannot reach millpond" in error_line(invoke(None, "people", str(people),
                                                        "--source", "crm"))


def test_source_not_found(people, collector):
    result = invoke(collector, "people", str(people), "--source", "nope")
    assert "source 'nope' not found" in error_line(result)


def test_source_of_the_wrong_kind(people, collector):
    result = invoke(collector, "people", str(people), "--source", "legacy")
    assert "source 'legacy' is a 'track' source; imports need an 'import' or 'pipelines' " \
           "source" in error_line(result)


def test_people_import_json_summary_then_already_imported(people, collector, tmp_path):
    state = str(tmp_path / "state")
    result = invoke(collector, "people", str(people), "--source", "crm", "--json",
                    "--state-dir", state)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["rows_read"], summary["events_accepted"], summary["rows_rejected"]) == (3, 2, 1)
    assert summary["source"] == "src_1"
    assert summary["rejected_by_reason"] == {"missing_id": 1}
    assert Path(summary["error_report"]).exists()
    assert sorted(m["userId"] for m in collector.stored.values()) == ["u1", "u2"]

    again = invoke(collector, "people", str(people), "--source", "crm", "--state-dir", state)
    assert again.exit_code == 0, again.output
    assert "already imported" in again.output
    assert len(collector.requests) == 1


def test_events_jsonl_import_human_summary(write, collector, tmp_path):
    path = write('{"userId": "u1", "event": "Clicked", "timestamp": "2024-01-01T00:00:00Z"}\n'
                 '{"userId": "u2"}\n', name="events.jsonl")
    result = invoke(collector, "events", str(path), "--source", "web",
                    "--state-dir", str(tmp_path / "s"))
    assert result.exit_code == 0, result.output
    assert "events accepted" in result.output and "missing_event" in result.output
    assert [m["event"] for m in collector.stored.values()] == ["Clicked"]


def test_sink_failure_tells_how_to_resume(people, collector, tmp_path):
    collector.fail_status = 400
    result = invoke(collector, "people", str(people), "--source", "crm",
                    "--state-dir", str(tmp_path / "s"))
    message = error_line(result)
    assert "refused the batch: the batch is wrong" in message
    assert "run the same command again to resume after row 0" in message


@pytest.mark.slow
def test_against_a_real_millpond_server(server, write, tmp_path):
    """The CLI twin against ``millpond serve``: admin API lookup, /v1/import, server dedupe."""
    source = server.create_source("crm-import", kind="import")
    path = write("email,plan,updated_at\n"
                 + "".join(f"user{i}@example.com,{'gold' if i % 3 else 'free'},"
                           f"{1_700_000_000 + i}\n" for i in range(1500)))
    args = ["--url", server.url, "--token", "test-admin-token", "people", str(path),
            "--source", "crm-import", "--timestamp-column", "updated_at", "--json",
            "--state-dir", str(tmp_path / "state")]
    result = CliRunner().invoke(import_group, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["events_accepted"], summary["rows_rejected"]) == (1500, 0)
    stored = server.events()
    assert len(stored) == 1500
    assert {e["source_id"] for e in stored} == {source["id"]}
    first = min(stored, key=lambda e: e["context"]["import"]["row"])
    assert first["userId"] == "user0@example.com"
    assert first["timestamp"] == "2023-11-14T22:13:20.000Z"
    assert first["traits"]["_timestamp"] == 1_700_000_000

    rerun = CliRunner().invoke(import_group, [*args, "--no-resume"])
    assert rerun.exit_code == 0, rerun.output
    again = json.loads(rerun.stdout)
    assert (again["events_accepted"], again["duplicates"]) == (0, 1500)
    assert len(server.events()) == 1500
