"""``millpond sources ...`` and ``millpond events ...`` as a user runs them, against a server."""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import httpx

from tests.support.cli import cli_env, fails, like_a_terminal, millpond, ok
from tests.support.delivery import send
from tests.support.server import free_port


def write_key_from(output: str) -> str:
    [line] = [line for line in output.splitlines() if line.startswith("write key:")]
    return line.split(":", 1)[1].strip()


# -- sources -------------------------------------------------------------------------
def test_sources_add_list_show(shared_server):
    out = ok(shared_server, "sources", "add", "cli-web")
    assert "created source cli-web" in out
    key = write_key_from(out)
    assert send(shared_server, key, messageId="cli-add-1").status_code == 200

    listed = json.loads(ok(shared_server, "sources", "list", "--json"))
    [mine] = [s for s in listed if s["name"] == "cli-web"]
    assert (mine["kind"], mine["write_key"], mine["replayable"]) == ("pipelines", key, True)
    assert "cli-web" in ok(shared_server, "sources", "list")

    by_name = json.loads(ok(shared_server, "sources", "show", "cli-web", "--json"))
    by_id = json.loads(ok(shared_server, "sources", "show", mine["id"], "--json"))
    assert by_name == by_id == mine
    assert mine["id"] in ok(shared_server, "sources", "show", "cli-web")


def test_sources_add_track_kind_prints_site_id(shared_server):
    out = ok(shared_server, "sources", "add", "cli-track", "--kind", "track")
    assert "site id:" in out
    shown = json.loads(ok(shared_server, "sources", "show", "cli-track", "--json"))
    assert shown["kind"] == "track" and shown["replayable"] is False
    assert shown["site_id"] in out and shown["write_key"] == write_key_from(out)


def test_sources_rotate_key(shared_server):
    old = write_key_from(ok(shared_server, "sources", "add", "cli-rotate"))
    out = ok(shared_server, "sources", "rotate-key", "cli-rotate")
    new = out.split("new write key:", 1)[1].strip()
    assert new and new != old
    assert send(shared_server, old).status_code == 401
    assert send(shared_server, new).status_code == 200
    shown = json.loads(ok(shared_server, "sources", "show", "cli-rotate", "--json"))
    assert shown["write_key"] == new


def test_sources_delete(shared_server):
    key = write_key_from(ok(shared_server, "sources", "add", "cli-delete"))
    # Without --yes it asks; no answer means no.
    result = millpond(shared_server, "sources", "delete", "cli-delete")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    ok(shared_server, "sources", "show", "cli-delete")
    assert "deleted source cli-delete" in ok(shared_server, "sources", "delete", "cli-delete",
                                             "--yes")
    assert send(shared_server, key).status_code == 401
    fails(millpond(shared_server, "sources", "show", "cli-delete"), "no source 'cli-delete'")


def test_sources_user_mistakes(shared_server):
    fails(millpond(shared_server, "sources", "show", "no-such-source"),
          "no source 'no-such-source'")
    fails(millpond(shared_server, "sources", "rotate-key", "no-such-source"), "no source")
    fails(millpond(shared_server, "sources", "delete", "no-such-source", "--yes"), "no source")
    ok(shared_server, "sources", "add", "cli-twice")
    fails(millpond(shared_server, "sources", "add", "cli-twice"), "already exists")
    result = millpond(shared_server, "sources", "add", "cli-kind", "--kind", "nonsense")
    assert result.returncode == 2 and "Traceback" not in result.stderr  # click usage error


def test_sources_retention_set_on_add_and_update(shared_server):
    ok(shared_server, "sources", "add", "cli-kept", "--retention", "400d")
    shown = json.loads(ok(shared_server, "sources", "show", "cli-kept", "--json"))
    assert shown["retention"] == "400d"
    fails(millpond(shared_server, "sources", "update", "cli-kept", "--retention", "400"),
          "missing unit")
    fails(millpond(shared_server, "sources", "add", "cli-short", "--retention", "10m"),
          "at least 1h")
    fails(millpond(shared_server, "sources", "show", "cli-short"), "no source")
    assert json.loads(ok(shared_server, "sources", "show", "cli-kept", "--json")) == shown
    updated = json.loads(ok(shared_server, "sources", "update", "cli-kept", "--retention",
                            "forever", "--json"))
    assert updated["retention"] == "forever"
    with shared_server.admin as admin:
        r = admin.post("/api/sources", json={"name": "api-kept", "retention": "2 weeks"})
        assert r.status_code == 400 and r.json()["error"]["field"] == "retention"
        assert admin.post("/api/sources", json={"name": "api-kept", "retention": "2w"}
                          ).json()["retention"] == "2w"


def test_unreachable_server_and_bad_token(shared_server):
    down = f"http://127.0.0.1:{free_port()}"
    fails(millpond(None, "sources", "list", env=cli_env(MILLPOND_URL=down)),
          f"cannot reach millpond at {down}")
    fails(millpond(None, "events", "tail", "--url", down, env=cli_env()), "cannot reach")
    fails(millpond(shared_server, "sources", "list",
                   env=cli_env(shared_server, MILLPOND_ADMIN_TOKEN="wrong")),
          "invalid admin token")
    env = cli_env(shared_server)
    del env["MILLPOND_ADMIN_TOKEN"]
    fails(millpond(shared_server, "sources", "list", env=env), "admin token")


# -- events --------------------------------------------------------------------------
def test_events_tail_shows_the_latest_events(shared_server):
    key = write_key_from(ok(shared_server, "sources", "add", "cli-tail"))
    other = write_key_from(ok(shared_server, "sources", "add", "cli-tail-other"))
    for i in range(5):
        sent = send(shared_server, key, messageId=f"tail-{i}", event=f"Event {i}")
        assert sent.status_code == 200
    assert send(shared_server, other, messageId="tail-other").status_code == 200

    out = ok(shared_server, "events", "tail", "--source", "cli-tail", "-n", "3")
    header, *lines = out.splitlines()
    assert header.split() == ["seq", "timestamp", "type", "what", "who", "messageId"]
    assert len(lines) == 3
    # one time format, whatever form the event carried
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line.split()[1])
               for line in lines), lines
    assert [line.split()[-1] for line in lines] == ["tail-2", "tail-3", "tail-4"]
    assert "Event 4" in lines[-1] and "track" in lines[-1] and "cli-user" in lines[-1]

    as_json = [json.loads(line) for line in
               ok(shared_server, "events", "tail", "--source", "cli-tail", "--json").splitlines()]
    assert [e["messageId"] for e in as_json] == [f"tail-{i}" for i in range(5)]
    assert "tail-other" in ok(shared_server, "events", "tail", "-n", "1")
    fails(millpond(shared_server, "events", "tail", "--source", "nope"), "no source 'nope'")


def test_events_list_pages_through_the_log_either_way(shared_server):
    key = write_key_from(ok(shared_server, "sources", "add", "cli-pages"))
    for i in range(5):
        assert send(shared_server, key, messageId=f"page-{i}").status_code == 200

    def ids(out: str) -> list[str]:
        return [line.split()[-2] for line in out.splitlines()[1:]
                if not line.startswith("more:")]

    first = ok(shared_server, "events", "list", "--source", "cli-pages", "--limit", "2")
    assert ids(first) == ["page-0", "page-1"]
    [more] = [line for line in first.splitlines() if line.startswith("more: --cursor ")]
    rest = ok(shared_server, "events", "list", "--source", "cli-pages", "--limit", "3",
              "--cursor", more.split()[-1])
    assert ids(rest) == ["page-2", "page-3", "page-4"] and "more:" in rest
    newest = ok(shared_server, "events", "list", "--source", "cli-pages", "--newest",
                "--limit", "10")
    assert ids(newest) == [f"page-{i}" for i in range(4, -1, -1)] and "more:" not in newest
    found = json.loads(ok(shared_server, "events", "list", "--source", "cli-pages",
                          "--message-id", "page-3", "--json"))
    assert [e["messageId"] for e in found["events"]] == ["page-3"]
    assert ids(ok(shared_server, "events", "list", "--source", "cli-pages",
                  "--received-to", "2000-01-01T00:00:00Z")) == []
    fails(millpond(shared_server, "events", "list", "--cursor", "x"), "cursor")


def _reader(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)


def _next_line(lines: queue.Queue, timeout: float) -> str:
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"no output within {timeout}s") from None


def test_events_tail_follow_prints_new_events(shared_server):
    key = write_key_from(ok(shared_server, "sources", "add", "cli-follow"))
    assert send(shared_server, key, messageId="follow-old").status_code == 200
    proc = subprocess.Popen(
        [sys.executable, "-m", "millpond.cli.main", "events", "tail", "--follow", "--source",
         "cli-follow", "-n", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(shared_server),
        preexec_fn=like_a_terminal)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
    try:
        assert _next_line(lines, 15).split()[0] == "seq"  # the header
        assert _next_line(lines, 15).split()[-1] == "follow-old"
        time.sleep(0.5)  # let it settle into its long poll
        started = time.monotonic()
        assert send(shared_server, key, messageId="follow-new", event="Live").status_code == 200
        line = _next_line(lines, 10)
        assert line.split()[-1] == "follow-new" and "Live" in line
        assert time.monotonic() - started < 5  # the long poll wakes at once
        # Events of other sources are not shown; the next one of ours is.
        other = write_key_from(ok(shared_server, "sources", "add", "cli-follow-other"))
        assert send(shared_server, other, messageId="follow-other").status_code == 200
        assert send(shared_server, key, messageId="follow-next").status_code == 200
        assert _next_line(lines, 10).split()[-1] == "follow-next"
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)  # Ctrl-C: status 130, no traceback
        assert proc.wait(10) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert "Traceback" not in proc.stderr.read()


def test_events_rejected(shared_server):
    key = write_key_from(ok(shared_server, "sources", "add", "cli-rejected"))
    r = httpx.post(f"{shared_server.url}/v1/batch", auth=(key, ""), json={"batch": [
        {"type": "track", "userId": "u", "event": "Fine"},
        {"type": "track", "userId": "u"},
        {"type": "teleport", "userId": "u"}]})
    assert r.status_code == 200 and len(r.json()["rejected"]) == 2
    data = json.loads(ok(shared_server, "events", "rejected", "--source", "cli-rejected", "--json"))
    assert [(x["index"], x["code"]) for x in data["rejections"]] == [
        (1, "missing_field"), (2, "unknown_type")]
    table = ok(shared_server, "events", "rejected", "--source", "cli-rejected")
    assert "missing_field" in table and "unknown_type" in table
    fails(millpond(shared_server, "events", "rejected", "--source", "nope"), "no source")


def test_storage_status_shows_each_tier(shared_server):
    key = write_key_from(ok(shared_server, "sources", "add", "cli-tiers"))
    assert send(shared_server, key, messageId="tiers-1").status_code == 200
    data = json.loads(ok(shared_server, "storage", "status", "--json"))
    hot, archive = data["tiers"]
    assert (hot["name"], archive["name"]) == ("hot", "archive")
    assert hot["events"] >= 1 and hot["bytes"] > 0 and hot["from"] is not None
    assert "bytes_per_event" in ok(shared_server, "storage", "status")
