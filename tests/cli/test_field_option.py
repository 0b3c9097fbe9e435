"""``--field PATH``: one value of a command's JSON answer, for ``$(...)`` in a shell script.

The README captures write keys, messageIds and replay ids this way (jq is not on every
machine), so these tests pin what a script relies on: bare strings, one line per list
item, exit 1 with a one-line error naming the fields that exist, and ``--json``
unchanged.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from millpond.cli.main import cli
from millpond.cli.output import pick
from tests.support.cli import fails, millpond, ok
from tests.support.delivery import send


def test_pick_walks_objects_and_lists() -> None:
    answer = {"id": "rpl_1", "progress": {"sent": 3, "skipped": {}},
              "events": [{"messageId": "a", "n": 1}, {"messageId": "b", "n": None}]}
    assert pick(answer, "id") == ["rpl_1"]
    assert pick(answer, "progress.sent") == [3]
    assert pick(answer, "progress.skipped") == [{}]
    assert pick(answer, "events.messageId") == ["a", "b"]
    assert pick(answer, "events.1.messageId") == ["b"]
    assert pick(answer, "events.n") == [1, None]
    assert pick([{"name": "x"}, {"name": "y"}], "name") == ["x", "y"]
    assert pick({"origins": ["https://a.example", "https://b.example"]}, "origins") == [
        "https://a.example", "https://b.example"]


@pytest.mark.parametrize(("path", "needle"), [
    ("nope", "no field 'nope' in the answer; it has: id, events"),
    ("events.nope", "no field 'nope' in events; it has: messageId"),
    ("events.5", "events has 1 item(s), no item 5"),
    ("id.x", "id is \"rpl_1\", not an object"),
    ("events..messageId", "empty name between dots"),
])
def test_pick_mistakes_say_what_exists(path: str, needle: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        pick({"id": "rpl_1", "events": [{"messageId": "a"}]}, path)
    assert exc.value.code == 1
    assert needle in capsys.readouterr().err


@pytest.mark.slow
def test_field_against_a_server(server) -> None:
    created = json.loads(ok(server, "sources", "add", "field-web", "--json"))
    key = ok(server, "sources", "show", "field-web", "--field", "write_key")
    assert key == created["write_key"] + "\n"  # bare, so $(...) captures exactly the key
    assert ok(server, "sources", "add", "field-app", "--field", "id").startswith("src_")
    names = ok(server, "sources", "list", "--field", "name").splitlines()
    assert {"field-web", "field-app"} <= set(names)

    for n in range(2):
        assert send(server, created["write_key"], type="track", userId="field-user",
                    event=f"Field {n}", messageId=f"field-{n}").status_code == 200
    # --json is untouched by the new option.
    whole = json.loads(ok(server, "events", "list", "--user-id", "field-user", "--json"))
    assert [e["messageId"] for e in whole["events"]] == ["field-0", "field-1"]
    ids = ok(server, "events", "list", "--user-id", "field-user", "--field", "events.messageId")
    assert ids.splitlines() == ["field-0", "field-1"]
    assert ok(server, "events", "list", "--user-id", "field-user", "--field",
              "events.0.event") == "Field 0\n"
    seqs = ok(server, "events", "list", "--user-id", "field-user", "--field", "events.seq")
    assert [int(s) for s in seqs.splitlines()] == [e["seq"] for e in whole["events"]]

    fails(millpond(server, "sources", "show", "field-web", "--field", "writekey"),
          "no field 'writekey' in the answer; it has: id, name, kind, write_key")


def test_serve_port_from_the_environment(monkeypatch) -> None:
    """``MILLPOND_PORT`` sets the port (``--port`` still wins), as ``MILLPOND_URL`` does for
    the client side: ``make run`` takes no options, so this is how it moves off 8787."""
    seen: list[int] = []
    monkeypatch.setattr("millpond.server.serve", lambda config: seen.append(config.port))
    # No log handler on CliRunner's stderr: it would outlive this test in the process.
    monkeypatch.setattr("millpond.logs.setup", lambda *a, **k: None)
    runner = CliRunner()
    assert runner.invoke(cli, ["serve"], env={"MILLPOND_PORT": "18123"}).exit_code == 0
    assert runner.invoke(cli, ["serve", "--port", "18124"],
                         env={"MILLPOND_PORT": "18123"}).exit_code == 0
    assert runner.invoke(cli, ["serve"], env={"MILLPOND_PORT": ""}).exit_code == 0
    assert seen == [18123, 18124, 8787]
