"""``millpond serve`` starting and stopping, as a person or a supervisor sees it: "serving
on" only for a port that answers, one clear line and exit 1 for a busy port or a data dir
another server holds, a SIGKILLed server restarting at once, and a log in the chosen
format and level. Real subprocesses; slow-marked."""

from __future__ import annotations

import json
import signal
import socket
import subprocess

import httpx
import pytest

from tests.support.server import free_port

from .helpers import env, phase, serve_command

pytestmark = pytest.mark.slow


def run_serve(data_dir, port: int, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(serve_command(data_dir, port, *args), env=env(), capture_output=True,
                          text=True, timeout=timeout)


def test_serving_on_is_printed_once_the_port_answers(tmp_path):
    port = free_port()
    proc = subprocess.Popen(serve_command(tmp_path / "data", port), env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()  # returns the moment the server prints it
        # At once (a raw socket: an httpx client takes longer to set up than uvicorn to
        # bind), no polling, no retry: the line itself is the promise.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            answer = conn.makefile("rb").read()
        assert line.strip() == (f"millpond serving on http://127.0.0.1:{port} "
                                f"(data: {tmp_path / 'data'})")
        assert answer.startswith(b"HTTP/1.1 200 ") and b'"ok":true' in answer
    finally:
        proc.terminate()
        proc.wait(30)


def test_port_zero_reports_the_port_really_bound(served):
    srv = served(port=0)
    url = srv.wait_serving()
    port = int(url.rsplit(":", 1)[1])
    assert port != 0
    assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200


def test_a_busy_port_is_one_clear_line_and_exit_1(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = run_serve(tmp_path / "data", port)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines == [f"error: port {port} on 127.0.0.1 is already in use (another millpond?); "
                     "choose --port"], done.stderr
    assert "serving on" not in done.stdout
    assert not (tmp_path / "data" / "log.db").exists()  # refused before opening any store


def test_a_second_server_on_the_same_data_dir_refuses_to_start(served):
    first = served()
    first.wait_serving()
    done = run_serve(first.data_dir, free_port())
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0] == (f"error: data dir {first.data_dir} is in use by another millpond "
                        f"(pid {first.proc.pid}); stop it first or choose another --data")
    assert "Traceback" not in done.stderr and "serving on" not in done.stdout
    # the first one did not notice
    assert httpx.get(f"{first.url}/healthz", timeout=5).status_code == 200
    assert (first.data_dir / "lock").read_text().strip() == str(first.proc.pid)


def test_a_sigkilled_server_restarts_at_once_on_its_data_dir(served):
    first = served()
    first.wait_serving()
    with first.admin as admin:
        assert admin.post("/api/sources", json={"name": "web"}).status_code == 201
    first.kill()
    again = served(name=first.data_dir.name)
    again.wait_serving()
    with again.admin as admin:
        assert [s["name"] for s in admin.get("/api/sources").json()["sources"]] == ["web"]
    assert (again.data_dir / "lock").read_text().strip() == str(again.proc.pid)


def test_json_log_has_one_object_per_line_from_start_to_stop(served):
    srv = served("--log-format", "json")
    url = srv.wait_serving()
    start = srv.wait_record(phase("starting"), what="startup record")
    assert start["level"] == "INFO" and start["logger"] == "millpond.server"
    assert start["ts"].endswith("Z") and start["url"] == url
    assert start["data_dir"] == str(srv.data_dir) and start["pid"] == srv.proc.pid
    assert start["last_seq"] == 0
    for store in ("log_db_bytes", "state_db_bytes", "profiles_db_bytes"):
        assert start[store] > 0
    assert "log.db" in start["message"] and str(srv.data_dir) in start["message"]
    srv.wait_record(phase("ready", url=url), what="ready record")
    assert srv.stop() == -signal.SIGTERM
    records = srv.records()  # every line parses, or this raises
    assert [r["phase"] for r in records if "phase" in r] == ["starting", "ready", "stopping",
                                                             "stopped"]
    assert all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    assert records[-1]["level"] == "INFO" and "stopped after" in records[-1]["message"]


def test_text_log_and_access_log(served):
    srv = served("--access-log")
    url = srv.wait_serving()
    httpx.get(f"{url}/healthz", timeout=5)
    srv.stop()
    lines = srv.lines()
    assert any(" INFO    millpond.server: millpond " in line and " starting " in line
               for line in lines), lines
    access = [line for line in lines if "uvicorn.access" in line]
    assert len(access) == 1 and '"GET /healthz HTTP/1.1" 200' in access[0], lines
    assert any("shutting down (SIGTERM)" in line for line in lines)


def test_no_access_log_by_default_and_json_access_records(served):
    quiet = served(name="quiet")
    loud = served("--access-log", "--log-format", "json", name="loud")
    for srv in (quiet, loud):
        httpx.get(f"{srv.wait_serving()}/healthz", timeout=5)
        srv.stop()
    assert not [line for line in quiet.lines() if "uvicorn.access" in line]
    access = [r for r in loud.records() if r["logger"] == "uvicorn.access"]
    assert len(access) == 1
    assert (access[0]["method"], access[0]["path"], access[0]["status"]) == ("GET", "/healthz",
                                                                            200)


def test_log_level_warning_hides_info(served):
    srv = served("--log-level", "warning")
    srv.wait_serving()
    srv.stop()
    assert srv.lines() == []  # a clean start and stop says nothing at warning level
    chatty = served(name="chatty")
    chatty.wait_serving()
    chatty.stop()
    assert len(chatty.lines()) == 4  # starting, ready, shutting down, stopped


@pytest.mark.parametrize("args, complaint", [
    (["--log-level", "loud"], 'error: logging.level: expected one of "debug", "info", '
                              '"warning", "error"; got loud from flag --log-level; '
                              "e.g. --log-level info"),
    (["--log-format", "xml"], 'error: logging.format: expected one of "text", "json"; got xml '
                              "from flag --log-format; e.g. --log-format json"),
])
def test_bad_log_flags_are_one_line_and_exit_2(tmp_path, args, complaint):
    done = run_serve(tmp_path / "data", free_port(), *args)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [complaint] and "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists()


def test_startup_record_counts_what_the_log_holds(served):
    first = served("--log-format", "json")
    first.wait_serving()
    with first.admin as admin:
        key = admin.post("/api/sources", json={"name": "web"}).json()["write_key"]
    batch = {"batch": [{"type": "track", "userId": "u", "event": "E", "messageId": f"m{i}"}
                       for i in range(5)]}
    assert httpx.post(f"{first.url}/v1/batch", json=batch, auth=(key, "")).status_code == 200
    first.stop()
    again = served("--log-format", "json", name=first.data_dir.name)
    again.wait_serving()
    start = again.wait_record(phase("starting"))
    assert start["last_seq"] == 5 and "last seq 5" in start["message"]
    assert json.dumps(start)  # plain JSON values only
