"""``millpond sources ...`` and ``millpond events ...`` as a user runs them, against a server."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, ServerProcess, free_port


@pytest.fixture(scope="module")
def srv(tmp_path_factory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("cli") / "data")
    proc.data_dir.mkdir(parents=True)
    proc.start()
    yield proc
    proc.stop()


def cli_env(server: ServerProcess | None = None, **extra) -> dict:
    env = {**os.environ, "MILLPOND_ADMIN_TOKEN": ADMIN_TOKEN, "COLUMNS": "200",
           "NO_COLOR": "1", **extra}
    if server is not None:
        env["MILLPOND_URL"] = server.url
    return env


def millpond(server: ServerProcess | None, *args: str, env: dict | None = None,
             stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "millpond.cli.main", *args], input=stdin,
                          capture_output=True, text=True, timeout=60,
                          env=env or cli_env(server))


def ok(server: ServerProcess, *args: str) -> str:
    result = millpond(server, *args)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stdout


def fails(result: subprocess.CompletedProcess, needle: str) -> None:
    """A user mistake: one readable error line on stderr, exit 1, no traceback."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and needle in lines[0], result.stderr


def send(server: ServerProcess, write_key: str, **body) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/track", auth=(write_key, ""),
                      json={"userId": "cli-user", "event": "Clicked", **body})


def write_key_from(output: str) -> str:
    [line] = [line for line in output.splitlines() if line.startswith("write key:")]
    return line.split(":", 1)[1].strip()


# -- sources -------------------------------------------------------------------------
def test_sources_add_list_show(srv):
    out = ok(srv, "sources", "add", "cli-web")
    assert "created source cli-web" in out
    key = write_key_from(out)
    assert send(srv, key, messageId="cli-add-1").status_code == 200

    listed = json.loads(ok(srv, "sources", "list", "--json"))
    [mine] = [s for s in listed if s["name"] == "cli-web"]
    assert (mine["kind"], mine["write_key"], mine["replayable"]) == ("pipelines", key, True)
    assert "cli-web" in ok(srv, "sources", "list")

    by_name = json.loads(ok(srv, "sources", "show", "cli-web", "--json"))
    by_id = json.loads(ok(srv, "sources", "show", mine["id"], "--json"))
    assert by_name == by_id == mine
    assert mine["id"] in ok(srv, "sources", "show", "cli-web")


def test_sources_add_track_kind_prints_site_id(srv):
    out = ok(srv, "sources", "add", "cli-track", "--kind", "track")
    assert "site id:" in out
    shown = json.loads(ok(srv, "sources", "show", "cli-track", "--json"))
    assert shown["kind"] == "track" and shown["replayable"] is False
    assert shown["site_id"] in out and shown["write_key"] == write_key_from(out)


def test_sources_rotate_key(srv):
    old = write_key_from(ok(srv, "sources", "add", "cli-rotate"))
    out = ok(srv, "sources", "rotate-key", "cli-rotate")
    new = out.split("new write key:", 1)[1].strip()
    assert new and new != old
    assert send(srv, old).status_code == 401
    assert send(srv, new).status_code == 200
    assert json.loads(ok(srv, "sources", "show", "cli-rotate", "--json"))["write_key"] == new


def test_sources_delete(srv):
    key = write_key_from(ok(srv, "sources", "add", "cli-delete"))
    # Without --yes it asks; no answer means no.
    result = millpond(srv, "sources", "delete", "cli-delete")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    ok(srv, "sources", "show", "cli-delete")
    assert "deleted source cli-delete" in ok(srv, "sources", "delete", "cli-delete", "--yes")
    assert send(srv, key).status_code == 401
    fails(millpond(srv, "sources", "show", "cli-delete"), "no source 'cli-delete'")


def test_sources_user_mistakes(srv):
    fails(millpond(srv, "sources", "show", "no-such-source"), "no source 'no-such-source'")
    fails(millpond(srv, "sources", "rotate-key", "no-such-source"), "no source")
    fails(millpond(srv, "sources", "delete", "no-such-source", "--yes"), "no source")
    ok(srv, "sources", "add", "cli-twice")
    fails(millpond(srv, "sources", "add", "cli-twice"), "already exists")
    result = millpond(srv, "sources", "add", "cli-kind", "--kind", "nonsense")
    assert result.returncode == 2 and "Traceback" not in result.stderr  # click usage error


def test_unreachable_server_and_bad_token(srv):
    down = f"http://127.0.0.1:{free_port()}"
    fails(millpond(None, "sources", "list", env=cli_env(MILLPOND_URL=down)),
          f"cannot reach millpond at {down}")
    fails(millpond(None, "events", "tail", "--url", down, env=cli_env()), "cannot reach")
    fails(millpond(srv, "sources", "list", env=cli_env(srv, MILLPOND_ADMIN_TOKEN="wrong")),
          "invalid admin token")
    env = cli_env(srv)
    del env["MILLPOND_ADMIN_TOKEN"]
    fails(millpond(srv, "sources", "list", env=env), "admin token")


# -- events --------------------------------------------------------------------------
def test_events_tail_shows_the_latest_events(srv):
    key = write_key_from(ok(srv, "sources", "add", "cli-tail"))
    other = write_key_from(ok(srv, "sources", "add", "cli-tail-other"))
    for i in range(5):
        assert send(srv, key, messageId=f"tail-{i}", event=f"Event {i}").status_code == 200
    assert send(srv, other, messageId="tail-other").status_code == 200

    out = ok(srv, "events", "tail", "--source", "cli-tail", "-n", "3")
    lines = out.splitlines()
    assert len(lines) == 3
    assert [line.split()[-1] for line in lines] == ["tail-2", "tail-3", "tail-4"]
    assert "Event 4" in lines[-1] and "track" in lines[-1] and "cli-user" in lines[-1]

    as_json = [json.loads(line) for line in
               ok(srv, "events", "tail", "--source", "cli-tail", "--json").splitlines()]
    assert [e["messageId"] for e in as_json] == [f"tail-{i}" for i in range(5)]
    assert "tail-other" in ok(srv, "events", "tail", "-n", "1")
    fails(millpond(srv, "events", "tail", "--source", "nope"), "no source 'nope'")


def _reader(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)


def _next_line(lines: queue.Queue, timeout: float) -> str:
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"no output within {timeout}s") from None


def test_events_tail_follow_prints_new_events(srv):
    key = write_key_from(ok(srv, "sources", "add", "cli-follow"))
    assert send(srv, key, messageId="follow-old").status_code == 200
    proc = subprocess.Popen(
        [sys.executable, "-m", "millpond.cli.main", "events", "tail", "--follow", "--source",
         "cli-follow", "-n", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(srv))
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
    try:
        assert _next_line(lines, 15).split()[-1] == "follow-old"
        time.sleep(0.5)  # let it settle into its long poll
        started = time.monotonic()
        assert send(srv, key, messageId="follow-new", event="Live").status_code == 200
        line = _next_line(lines, 10)
        assert line.split()[-1] == "follow-new" and "Live" in line
        assert time.monotonic() - started < 5  # the long poll wakes at once
        # Events of other sources are not shown; the next one of ours is.
        other = write_key_from(ok(srv, "sources", "add", "cli-follow-other"))
        assert send(srv, other, messageId="follow-other").status_code == 200
        assert send(srv, key, messageId="follow-next").status_code == 200
        assert _next_line(lines, 10).split()[-1] == "follow-next"
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(10)
    assert "Traceback" not in proc.stderr.read()


def test_events_rejected(srv):
    key = write_key_from(ok(srv, "sources", "add", "cli-rejected"))
    r = httpx.post(f"{srv.url}/v1/batch", auth=(key, ""), json={"batch": [
        {"type": "track", "userId": "u", "event": "Fine"},
        {"type": "track", "userId": "u"},
        {"type": "teleport", "userId": "u"}]})
    assert r.status_code == 200 and len(r.json()["rejected"]) == 2
    data = json.loads(ok(srv, "events", "rejected", "--source", "cli-rejected", "--json"))
    assert [(x["index"], x["code"]) for x in data["rejections"]] == [
        (1, "missing_field"), (2, "unknown_type")]
    table = ok(srv, "events", "rejected", "--source", "cli-rejected")
    assert "missing_field" in table and "unknown_type" in table
    fails(millpond(srv, "events", "rejected", "--source", "nope"), "no source")
