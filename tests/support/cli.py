"""Run the ``millpond`` command against a test server, and check how it answered.

Two ways, one module: :func:`millpond` runs the real command in a subprocess, exactly as
a user types it (entry point, environment, exit code, what goes to stderr); :func:`invoke`
runs it in this process through click's ``CliRunner``, several times faster, for tests
that run many commands and care about their output only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from click.testing import CliRunner, Result

from millpond.cli.main import cli
from tests.support.server import ADMIN_TOKEN, ServerProcess


def cli_env(server: ServerProcess | None = None, **extra: str) -> dict[str, str]:
    """The environment of a user talking to ``server``: its URL, the admin token, no colour
    and a wide terminal (so tables do not wrap what a test looks for)."""
    env = {**os.environ, "MILLPOND_ADMIN_TOKEN": ADMIN_TOKEN, "COLUMNS": "200",
           "NO_COLOR": "1", **extra}
    if server is not None:
        env["MILLPOND_URL"] = server.url
    return env


def millpond(server: ServerProcess | None, *args: str, env: dict | None = None,
             stdin: str = "") -> subprocess.CompletedProcess:
    """``millpond *args`` in a subprocess against ``server`` (or as ``env`` says)."""
    return subprocess.run([sys.executable, "-m", "millpond.cli.main", *args], input=stdin,
                          capture_output=True, text=True, timeout=60,
                          env=env or cli_env(server))


def ok(server: ServerProcess, *args: str) -> str:
    """``millpond *args`` must succeed without a traceback; returns its stdout."""
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


def invoke(server: ServerProcess, *args: str, code: int | None = 0) -> Result:
    """``millpond *args`` in this process against ``server``; asserts the exit ``code``
    unless it is None. ``result.output`` holds stdout and stderr, ``result.stdout`` only
    stdout (what ``--json`` writes)."""
    result = CliRunner().invoke(cli, list(args), env={"MILLPOND_URL": server.url,
                                                      "MILLPOND_ADMIN_TOKEN": ADMIN_TOKEN})
    if code is not None:
        assert result.exit_code == code, result.output
    return result


def like_a_terminal() -> None:
    """``preexec_fn`` for a CLI child that a test stops with Ctrl-C (SIGINT): give it the
    default SIGINT disposition a terminal gives. A shell starting ``make test`` in the
    background (``make test &``, nohup, some CI runners) ignores SIGINT, children inherit
    that, and Python then never raises KeyboardInterrupt: the test would see no Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)

