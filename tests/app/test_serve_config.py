"""``millpond serve`` as users run it: a bad setting is one line and exit code 2, and a
setting written only in ``millpond.toml`` reaches the running server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.cli import millpond
from tests.support.delivery import create_destination, send_batch, stats, track
from tests.support.server import free_port
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

TOKEN = "file-admin-token"


def clean_env(**extra: str) -> dict[str, str]:
    """The test runner's environment without any MILLPOND_* of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILLPOND_")}
    return {**env, **extra}




@pytest.mark.parametrize(("args", "env", "toml", "expected"), [
    (["--port", "70000"], {}, None,
     "error: port: expected an integer from 0 to 65535; got 70000 from flag --port; "
     "e.g. --port 8787"),
    ([], {"MILLPOND_DELIVERY_RETRY_CAPP": "5"}, None,
     "error: unknown environment variable MILLPOND_DELIVERY_RETRY_CAPP (got 5); did you mean "
     "MILLPOND_DELIVERY_RETRY_CAP? e.g. MILLPOND_DELIVERY_RETRY_CAP=30.0"),
    ([], {}, "[delivery]\ntimeout = -1\n",
     "error: delivery.timeout: expected a number > 0 and <= 3600; got -1 from {toml} line 2; "
     "e.g. [delivery] timeout = 30.0"),
])
def test_a_bad_setting_is_one_line_and_exit_2(tmp_path: Path, args, env, toml,
                                              expected: str) -> None:
    data = tmp_path / "data"
    if toml is not None:
        path = tmp_path / "millpond.toml"
        path.write_text(toml)
        args = [*args, "--config", str(path)]
        expected = expected.format(toml=path)
    result = millpond(None, "serve", "--data", str(data), *args, env=clean_env(**env))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [expected]
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not data.exists()  # refused before anything was opened


def test_print_config_masks_the_token_and_says_where_values_came_from(tmp_path: Path) -> None:
    path = tmp_path / "millpond.toml"
    path.write_text(f'admin_token = "{TOKEN}"\n\n[delivery]\ntimeout = 0.5\n')
    result = millpond(None, "serve", "--config", str(path), "--print-config", "--port",
                      "9100", env=clean_env(MILLPOND_LOGGING_FORMAT="json"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert TOKEN not in out and f'# admin_token = "••••oken"  # {path} line 1' in out
    assert f"timeout = 0.5  # {path} line 4" in out
    assert "port = 9100  # flag --port" in out
    assert 'format = "json"  # env MILLPOND_LOGGING_FORMAT' in out


@pytest.mark.serial  # a 0.5 s delivery timeout must show within 10 s
def test_the_server_honours_millpond_toml(tmp_path: Path, vendor) -> None:
    port = free_port()
    path = tmp_path / "millpond.toml"
    path.write_text(f'port = {port}\nadmin_token = "{TOKEN}"\n\n[storage]\n'
                    f'data_dir = "{tmp_path / "from-file"}"\n\n[delivery]\n'
                    "timeout = 0.5\nretry_base = 0.1\nretry_cap = 0.2\n")
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "millpond.cli.main", "serve", "--config",
                             str(path)], env=clean_env(), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _healthy(url, proc), what="the server on the file's port")
        assert (tmp_path / "from-file" / "log.db").exists()
        slow = vendor("webhook")
        slow.delay_seconds = 5.0  # far beyond the file's 0.5 s, far below the default 30 s
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"},
                          timeout=30) as admin:
            source = admin.post("/api/sources", json={"name": "web", "kind": "pipelines"})
            source.raise_for_status()
            create_destination(admin, name="slow", type="webhook",
                               settings=slow.destination_settings())
            started = time.monotonic()
            send_batch(url, source.json()["write_key"], [track("u1", 1)])
            wait_until(lambda: "Timeout" in (stats(admin, "slow")["last_error"] or ""),
                       timeout=10, what="a delivery attempt timing out")
            assert time.monotonic() - started < 10
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def _healthy(url: str, proc: subprocess.Popen) -> bool:
    assert proc.poll() is None, "the server exited"
    try:
        return httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False
