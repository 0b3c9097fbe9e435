"""The CLI's rough edges, as a user meets them in a real subprocess: user text that looks
like rich markup, tables on a narrow terminal and in a pipe, where the admin token comes
from, masked secrets, Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.cli import cli_env, fails, like_a_terminal, millpond, ok
from tests.support.delivery import create_destination, send_batch, track, upload
from tests.support.server import ADMIN_TOKEN

pytestmark = pytest.mark.slow

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _no_token_env(server, **extra: str) -> dict[str, str]:
    env = cli_env(server, **extra)
    del env["MILLPOND_ADMIN_TOKEN"]
    return env


def test_user_text_is_never_read_as_markup(shared_server):
    out = ok(shared_server, "sources", "add", "edge-[/bold]web")
    assert "edge-[/bold]web" in out
    listed = ok(shared_server, "sources", "list")
    assert "edge-[/bold]web" in listed
    fails(millpond(shared_server, "destinations", "add", "edge-d", "--type", "[/bold]"),
          "[/bold]")
    fails(millpond(shared_server, "events", "list", "--type", "[/bold]"), "got '[/bold]'")
    shared_server.create_source("edge-crm", kind="import")
    r = upload(shared_server, "id,tags[bold],plan\nedge-u1,vip,[red]pro\n", source="edge-crm")
    assert r.json()["state"] == "completed", r.text
    shown = ok(shared_server, "people", "show", "edge-u1")
    assert "tags[bold]" in shown and "[red]pro" in shown


def test_piped_tables_are_tab_separated_with_every_value_whole(shared_server):
    ok(shared_server, "sources", "add", "edge-" + "n" * 70)
    [mine] = [s for s in json.loads(ok(shared_server, "sources", "list", "--json"))
              if s["name"].startswith("edge-nnn")]
    lines = ok(shared_server, "sources", "list").splitlines()
    assert lines[0].split("\t") == ["id", "name", "kind", "replayable", "write_key"]
    row = next(line.split("\t") for line in lines if line.startswith(mine["id"]))
    assert row == [mine["id"], mine["name"], "pipelines", "True", mine["write_key"]]


def test_terminal_tables_never_cut_ids_or_keys(shared_server):
    ok(shared_server, "sources", "add", "edge-wide-" + "w" * 60)
    [mine] = [s for s in json.loads(ok(shared_server, "sources", "list", "--json"))
              if s["name"].startswith("edge-wide-")]
    narrow = cli_env(shared_server, COLUMNS="90", FORCE_COLOR="1")
    result = millpond(shared_server, "sources", "list", env=narrow)
    assert result.returncode == 0, result.stderr
    text = ANSI.sub("", result.stdout)
    assert "…" not in text
    assert mine["write_key"] in text and mine["id"] in text  # whole, on one line
    assert max(len(line) for line in text.splitlines()) <= 90


def test_the_token_comes_from_the_option_the_environment_or_the_data_dir(shared_server,
                                                                         tmp_path):
    env = _no_token_env(shared_server)
    result = millpond(shared_server, "sources", "list", env=env)
    fails(result, "--token")
    message = result.stderr
    assert "MILLPOND_ADMIN_TOKEN" in message and "--data" in message and ".millpond" in message

    # --token in the same places for every command group
    for args in (["--token", ADMIN_TOKEN, "sources", "list"],
                 ["sources", "--token", ADMIN_TOKEN, "list"],
                 ["sources", "list", "--token", ADMIN_TOKEN],
                 ["--token", ADMIN_TOKEN, "import", "list"],
                 ["import", "--token", ADMIN_TOKEN, "list"],
                 ["import", "list", "--token", ADMIN_TOKEN],
                 ["replay", "--token", ADMIN_TOKEN, "list"],
                 ["destinations", "list", "--token", ADMIN_TOKEN]):
        result = millpond(shared_server, *args, env=env)
        assert result.returncode == 0, (args, result.stderr)

    # the server's data dir: --data, or ./.millpond where the command runs
    data = tmp_path / "elsewhere"
    data.mkdir()
    (data / "admin_token").write_text(ADMIN_TOKEN + "\n")
    assert millpond(shared_server, "sources", "list", "--data", str(data),
                    env=env).returncode == 0
    here = tmp_path / "project"
    (here / ".millpond").mkdir(parents=True)
    (here / ".millpond" / "admin_token").write_text(ADMIN_TOKEN + "\n")
    found = subprocess.run([sys.executable, "-m", "millpond.cli.main", "sources", "list"],
                           cwd=here, env=env, capture_output=True, text=True, timeout=60)
    assert found.returncode == 0, found.stderr
    # a wrong token file is the server's answer, not a silent fallback
    (data / "admin_token").write_text("wrong\n")
    fails(millpond(shared_server, "sources", "list", "--data", str(data), env=env),
          "invalid admin token")


def test_masked_secrets_print_as_bullets(shared_server, vendor):
    hook = vendor("webhook", secret="s3cret-value-cret")
    with shared_server.admin as admin:
        create_destination(admin, name="edge-hook", type="webhook",
                           settings=hook.destination_settings())
    shown = ok(shared_server, "destinations", "show", "edge-hook")
    assert "••••cret" in shown and "\\u2022" not in shown
    as_json = ok(shared_server, "destinations", "show", "edge-hook", "--json")
    assert "••••cret" in as_json


@pytest.mark.parametrize("args", [
    ["events", "tail", "--follow"],
    ["replay", "status", "rpl_edge", "--watch"],
    ["import", "status", "imp_edge", "--watch"],
])
@pytest.mark.serial  # Ctrl-C tests were a CI timing flake: `make test` runs them alone
def test_ctrl_c_exits_130(shared_server, args, tmp_path):
    """A command waiting on the server, stopped with SIGINT: status 130, no traceback."""
    # PYTHONFAULTHANDLER: if it ever hangs, SIGABRT below prints where, into the failure.
    env = cli_env(shared_server, PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1")
    # A port that accepts and never answers, so every command is waiting when Ctrl-C comes.
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        env["MILLPOND_URL"] = f"http://127.0.0.1:{silent.getsockname()[1]}"
        proc = subprocess.Popen([sys.executable, "-m", "millpond.cli.main", *args], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=like_a_terminal)
        silent.settimeout(60)  # under load, importing the CLI alone can take seconds
        connection = _request_from(silent, "GET /api/")  # this CLI, waiting for the answer
        assert proc.poll() is None, proc.communicate()
        _wait_blocked(proc.pid)
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            out, err = proc.communicate()
            pytest.fail(f"still running 30 s after Ctrl-C; its stack:\n{err}")
        finally:
            connection.close()
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err and "Aborted" not in err, err


def _wait_blocked(pid: int, timeout: float = 30.0) -> None:
    """Until the CLI sleeps in the kernel, waiting for the answer.

    Why: a SIGINT that lands between CPython's last check for signals and its blocking
    ``recv`` is only handled when the ``recv`` returns, which here is never (a CPython
    race no program can close; a person's Ctrl-C does not come microseconds after the
    request). The test sent it right after reading the request, into that window: the
    CLI's stack showed it still in ``recv`` 30 s later (a CI failure). Asleep in the
    kernel, the signal interrupts the call and Python raises KeyboardInterrupt."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rpartition(")")[2].split()[0] == "S":
            return
        time.sleep(0.01)
    pytest.fail(f"the CLI never blocked waiting for the server in {timeout} s")


def _request_from(listener, start: str):
    """The first connection to ``listener`` whose request starts with ``start``.

    Why not the first connection: the port came from the OS and may be one a stopped fake
    vendor had, which a server of an earlier test still retries; that is not the CLI."""
    while True:
        connection, _ = listener.accept()
        connection.settimeout(60)
        head = b""
        while len(head) < len(start) and (chunk := connection.recv(64)):
            head += chunk
        if head.decode("latin-1").startswith(start):
            return connection
        connection.close()


@pytest.mark.serial
def test_ctrl_c_on_the_server_exits_130(tmp_path):
    """``millpond serve`` stopped with Ctrl-C finishes gracefully, then reports SIGINT."""
    from tests.support.server import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "millpond.cli.main", "serve", "--port", str(port), "--data",
         str(tmp_path / "data")], env={**os.environ, "MILLPOND_ADMIN_TOKEN": ADMIN_TOKEN},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=like_a_terminal)
    deadline = time.monotonic() + 30
    while "serving on" not in (line := proc.stdout.readline()):
        assert time.monotonic() < deadline and line, proc.stderr.read()
    proc.send_signal(signal.SIGINT)
    proc.wait(30)
    err = proc.stderr.read()
    assert proc.returncode in (130, -signal.SIGINT), err
    assert "Traceback" not in err and "stopped after" in err
    assert Path(tmp_path / "data").is_dir()


def test_replay_preview_shows_what_json_shows_with_errors_folded(shared_server, vendor):
    amplitude = vendor("amplitude")
    web = shared_server.create_source("edge-preview")
    users = [f"u{i}" for i in range(40)]  # shorter than Amplitude's 5 characters
    send_batch(shared_server.url, web["write_key"],
               [track(u, 0) for u in users] + [track("long-enough-user", i) for i in range(3)])
    with shared_server.admin as admin:
        create_destination(admin, name="edge-amp", type="amplitude",
                           settings=amplitude.destination_settings())
    args = ["replay", "preview", "edge-amp", "--source", "edge-preview"]
    as_json = json.loads(ok(shared_server, *args, "--json"))["preview"]
    assert len(as_json["mapping_errors"]) == 40  # one per user id in the API
    out = ok(shared_server, *args)
    lines = out.splitlines()
    assert len(lines) < 25, out
    assert "by source: edge-preview 43" in out
    assert "by event: Order Completed 43" in out
    [error] = [line for line in lines if "error (" in line]
    assert "'…'" in error and "40 different values" in error and "40" in error.split()[-1]
    assert sum("error sample:" in line for line in lines) == 3
    assert any(line.startswith("sample (") and "long-enough-user" in line for line in lines)


def test_import_upload_hands_the_file_to_the_server(shared_server, tmp_path):
    shared_server.create_source("edge-upload", kind="import")
    people = tmp_path / "people.csv"
    people.write_text("id,plan\nup1,pro\nup2,free\n,nobody\n")
    job = json.loads(ok(shared_server, "import", "upload", str(people), "--source",
                        "edge-upload", "--watch", "--json"))
    assert job["state"] == "completed", job
    assert job["summary"]["events_accepted"] == 2 and job["summary"]["rows_rejected"] == 1
    status = ok(shared_server, "import", "status", job["id"])
    assert f"import {job['id']}: completed" in status and "people.csv" in status
    events = tmp_path / "events.jsonl"
    events.write_text('{"userId": "up1", "event": "Signed Up"}\n')
    out = ok(shared_server, "import", "upload", str(events), "--source", "edge-upload",
             "--kind", "events")
    assert "uploaded events.jsonl: import imp_" in out
    fails(millpond(shared_server, "import", "upload", str(people), "--source", "nope"),
          "no source 'nope'")


def test_cluster_status_on_the_embedded_store_says_it_is_not_a_cluster(shared_server):
    assert ok(shared_server, "cluster", "status").strip() == (
        "not a cluster: this server runs on the embedded store")
    data = json.loads(ok(shared_server, "cluster", "status", "--json"))
    assert data["clustered"] is False and data["processes"] == []


def test_a_usage_error_is_one_line_naming_the_help_with_status_2():
    """Click's usage errors (a missing argument, a value of the wrong type, an unknown
    command) read like every other error: one line, status 2 as click gives them."""
    cases = {("destinations", "update", "hook", "--rate", "abc"):
             "error: invalid value for '--rate': 'abc' is not a valid float"
             " (see millpond destinations update --help)",
             ("sources", "add"): "error: missing argument 'NAME' (see millpond sources add"
             " --help)",
             ("bogus",): "error: no such command 'bogus' (see millpond --help)"}
    for args, line in cases.items():
        result = millpond(None, *args)
        assert result.returncode == 2, result
        assert result.stderr.splitlines() == [line], result.stderr
