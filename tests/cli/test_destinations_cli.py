"""``millpond destinations`` and ``millpond dead-letters`` against a real server."""

from __future__ import annotations

import functools
import json

import pytest

from tests.support.cli import invoke
from tests.support.delivery import send_batch, track
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def run(server):
    """``run(*args, code=0)``: ``millpond *args`` in this process, against ``server``."""
    return functools.partial(invoke, server)


def as_json(result) -> dict | list:
    return json.loads(result.output)


def test_add_list_show_update_stats_disable_enable_delete(server, run, vendor, tmp_path):
    hook = vendor("webhook")
    out = run("destinations", "add", "hook", "--type", "webhook",
              "--setting", f"url={hook.destination_settings()['url']}",
              "--setting", "batch_size=5", "--setting", "secret=whsec_0123456789abcdef",
              "--rate", "250")
    assert "created destination hook" in out.output
    shown = as_json(run("destinations", "show", "hook", "--json"))
    assert shown["settings"]["batch_size"] == 5  # coerced by the settings schema
    assert shown["settings"]["secret"] == "••••cdef"
    assert shown["rate_limit"]["events_per_second"] == 250
    listed = as_json(run("destinations", "list", "--json"))
    assert [d["name"] for d in listed] == ["hook"]
    assert "hook" in run("destinations", "list").output
    source = server.create_source("web")
    send_batch(server.url, source["write_key"], [track("u1", i) for i in range(3)])
    hook.wait_for(3)
    wait_until(lambda: as_json(run("destinations", "stats", "hook", "--json"))
               ["stats"]["sent"] == 3)
    assert "Send event" in run("destinations", "stats", "hook").output
    assert "Send event" in run("destinations", "show", "hook").output

    actions = tmp_path / "actions.json"
    actions.write_text(json.dumps([{"name": "ids", "trigger": 'type = "track"',
                                    "mapping": {"messageId": {"@path": "$.messageId"}}}]))
    run("destinations", "update", "hook", "--actions-file", str(actions), "--setting",
        "batch_size=1")
    shown = as_json(run("destinations", "show", "hook", "--json"))
    assert [a["name"] for a in shown["actions"]] == ["ids"]
    assert shown["settings"]["secret"] == "••••cdef"  # kept through the masked round trip
    assert "disabled hook" in run("destinations", "disable", "hook").output
    assert as_json(run("destinations", "show", "hook", "--json"))["enabled"] is False
    assert "enabled hook" in run("destinations", "enable", "hook").output
    assert "deleted destination hook" in run("destinations", "delete", "hook", "--yes").output
    assert as_json(run("destinations", "list", "--json")) == []


def test_types_and_test_commands(server, run, vendor, tmp_path, monkeypatch):
    assert "mixpanel" in run("destinations", "types").output
    types = as_json(run("destinations", "types", "--json"))
    assert any(t["name"] == "webhook" for t in types)
    mp = vendor("mixpanel")
    # Settings from a file (@FILE): a secret kept out of the shell's history.
    (tmp_path / "mp.json").write_text(json.dumps(mp.destination_settings()))
    monkeypatch.chdir(tmp_path)
    run("destinations", "add", "mp", "--type", "mixpanel", "--settings-json", "@mp.json")
    event = json.dumps({"type": "track", "event": "Signed Up", "userId": "u9",
                        "messageId": "m-9"})
    text = run("destinations", "test", "mp", "--event", event).output
    assert "Track events: send" in text and "/import?strict=1" in text
    assert mp.destination_settings()["api_secret"] not in text
    data = as_json(run("destinations", "test", "mp", "--event", event, "--json"))
    assert data["actions"][0]["payload"]["properties"]["$insert_id"] == "m-9"
    (tmp_path / "event.json").write_text(event)
    from_file = as_json(run("destinations", "test", "mp", "--event", "@event.json", "--json"))
    assert from_file == data
    # A file name where the JSON goes: one line that says how to pass a file.
    wrong = run("destinations", "test", "mp", "--event", "event.json", code=1).output
    assert wrong.strip() == (
        "error: --event is not JSON (Expecting value at character 0): give the JSON, or"
        " @FILE to read it from a file (@- from standard input), e.g. '{\"type\":"
        ' "track", "event": "Order Completed", "userId": "u1"}\'')
    assert "no action handles group" in run(
        "destinations", "test", "mp", "--event", '{"type": "group", "groupId": "g"}').output


def test_mistakes_are_one_line_errors(run):
    result = run("destinations", "add", "x", "--type", "nope", code=None)
    assert result.exit_code != 0
    assert "unknown destination type" in result.output and "Traceback" not in result.output
    result = run("destinations", "add", "x", "--type", "webhook", "--setting",
                 "url=https://example.com/h", "--rate", "0", code=None)
    assert "rate_limit.events_per_second" in result.output
    result = run("destinations", "show", "missing", code=None)
    assert "no destination 'missing'" in result.output
    result = run("dead-letters", "redrive", "missing", code=None)
    assert result.exit_code != 0


def test_dead_letters_list_show_redrive(server, run, vendor):
    hook = vendor("webhook", secret="whsec_0123456789abcdef")
    settings = hook.destination_settings()
    wrong = {**settings, "secret": "whsec_wrong_wrong_wrong"}
    run("destinations", "add", "hook", "--type", "webhook", "--settings-json",
        json.dumps(wrong))
    source = server.create_source("web")
    send_batch(server.url, source["write_key"], [track("u1", i) for i in range(2)])
    rows = wait_until(lambda: len(r := as_json(run("dead-letters", "list", "hook", "--json"))
                                  ["dead_letters"]) == 2 and r, what="two dead letters")
    assert {r["status"] for r in rows} == {401}
    assert "401" in run("dead-letters", "list", "hook").output
    shown = run("dead-letters", "show", str(rows[0]["id"])).output
    assert "X-Millpond-Signature" in shown
    assert as_json(run("dead-letters", "show", str(rows[0]["id"]), "--json"))["seq"] == 1
    run("destinations", "update", "hook", "--setting", f"secret={settings['secret']}")
    out = run("dead-letters", "redrive", "hook", "--id", str(rows[0]["id"]))
    assert "redriving 1" in out.output
    hook.wait_for(1)
    out = as_json(run("dead-letters", "redrive", "hook", "--json"))
    assert out["redriving"] == 1
    hook.wait_for(2)
    def all_redriven() -> list[dict] | None:
        rows = as_json(run("dead-letters", "list", "hook", "--state", "all",
                           "--json"))["dead_letters"]
        return rows if all(r["state"] == "redriven" for r in rows) else None

    everything = wait_until(all_redriven, what="both redriven")
    assert len(everything) == 2
    assert as_json(run("dead-letters", "list", "hook", "--json"))["dead_letters"] == []
