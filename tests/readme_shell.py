"""A reader's terminal for the README walk-through test: bash, with state between commands.

Why a fresh ``bash`` per command instead of one long-lived shell: each command then has
its own exit status, output files, process group and timeout, and a hung command can be
stopped without losing the session. What a terminal carries from one command to the
next (variables, exported or not, and the working directory) is saved by an ``EXIT``
trap into a state file that the next command's bash sources first, so ``export
WRITE_KEY=$(...)`` works for every later command, as it does for a reader.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.cli import like_a_terminal

#: Variables bash manages itself; never carried over (PWD travels as a ``cd``).
_SPECIAL = "SHLVL PWD OLDPWD _ BASHPID BASH_ARGV0 BASH_COMMAND BASH_SUBSHELL LINENO RANDOM " \
           "SRANDOM SECONDS EPOCHSECONDS EPOCHREALTIME PIPESTATUS FUNCNAME BASH_LINENO"

_WRAPPER = r"""
__state=$1
__baseline=" $(cat "$2") "
__save() {
  local __n __exported
  __exported=" $(compgen -e | tr '\n' ' ') "
  {
    for __n in $(compgen -v); do
      case "$__n" in __*) continue ;; esac
      case " @SPECIAL@ " in *" $__n "*) continue ;; esac
      # Bash's own variables stay, unless exported (a reader's `export PATH=...`).
      case "$__baseline" in *" $__n "*)
        case "$__exported" in *" $__n "*) ;; *) continue ;; esac ;;
      esac
      declare -p "$__n" 2>/dev/null
    done
    printf 'cd -- %q\n' "$PWD"
  } > "$__state.new" && mv -f "$__state.new" "$__state"
}
source "$__state"
trap '__rc=$?; __save; exit $__rc' EXIT
source "$3"
""".replace("@SPECIAL@", _SPECIAL)


@dataclass
class Result:
    status: int
    stdout: str
    stderr: str


class Background:
    """A command left running (a server, ``--follow``): output in files, stopped by PID."""

    def __init__(self, proc: subprocess.Popen, out: Path, err: Path, label: str):
        self.proc, self.out_path, self.err_path, self.label = proc, out, err, label

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.out_path.read_text(errors="replace") + self.err_path.read_text(
            errors="replace")

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait_for(self, needle: str, timeout: float, what: str) -> str:
        """Poll the output until ``needle`` shows up; fail with the output if it does not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.output()
            if needle in text:
                return text
            if not self.running():
                break
            time.sleep(0.05)
        raise AssertionError(f"{self.label}: {what} did not print {needle!r} within "
                             f"{timeout:g}s (exit status {self.proc.poll()}); output:\n"
                             f"{self.output()[-3000:]}")

    def interrupt(self, timeout: float = 30.0) -> int | None:
        """Ctrl-C as a reader presses it (SIGINT to the command's process group), then
        SIGTERM and SIGKILL if it does not end. Returns the exit status."""
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 10.0),
                          (signal.SIGKILL, 10.0)):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)  # our own child leads its process group
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        return self.proc.poll()


class Shell:
    """The reader's terminal: runs commands in ``cwd`` through bash, keeping its state."""

    def __init__(self, cwd: Path, scratch: Path, env: dict[str, str]):
        self.cwd, self.scratch, self.env = cwd, scratch, env
        scratch.mkdir(parents=True, exist_ok=True)
        self.state = scratch / "state.sh"
        self.state.write_text(f"cd -- {shlex.quote(str(cwd))}\n")
        self.wrapper = scratch / "wrapper.sh"
        self.wrapper.write_text(_WRAPPER)
        self.baseline = scratch / "baseline"
        names = subprocess.run(["bash", "--norc", "--noprofile", "-c", "compgen -v"],
                               env={}, capture_output=True, text=True, check=True).stdout
        self.baseline.write_text(" ".join(names.split()))
        self._count = 0

    def _files(self, text: str) -> tuple[Path, Path, Path]:
        self._count += 1
        base = self.scratch / f"cmd-{self._count:03d}"
        command = base.with_suffix(".sh")
        command.write_text(text + "\n")
        return command, base.with_suffix(".out"), base.with_suffix(".err")

    def _argv(self, command: Path, state: Path) -> list[str]:
        return ["bash", "--norc", "--noprofile", str(self.wrapper), str(state),
                str(self.baseline), str(command)]

    def run(self, text: str, timeout: float) -> Result:
        """Run one command to its end (killed, with its children, after ``timeout``)."""
        command, out, err = self._files(text)
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(self._argv(command, self.state), cwd=self.cwd,
                                    env=self.env, stdin=subprocess.DEVNULL, stdout=stdout,
                                    stderr=stderr, start_new_session=True,
                                    preexec_fn=like_a_terminal)
            try:
                status = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                Background(proc, out, err, text).interrupt(timeout=5)
                raise AssertionError(
                    f"`{text}` did not end within {timeout:g}s and was stopped. If it runs "
                    "until stopped, tests/test_readme.py must know it (see BACKGROUND); "
                    f"output so far:\n{out.read_text(errors='replace')[-2000:]}"
                    f"{err.read_text(errors='replace')[-2000:]}") from None
        return Result(status, out.read_text(errors="replace"), err.read_text(errors="replace"))

    def start(self, text: str, label: str) -> Background:
        """Start a command that runs until stopped (as in another terminal, or until
        Ctrl-C). It sees the session's state but its own changes are not kept."""
        command, out, err = self._files(text)
        snapshot = command.with_suffix(".state")
        snapshot.write_bytes(self.state.read_bytes())
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(self._argv(command, snapshot), cwd=self.cwd, env=self.env,
                                    stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                    start_new_session=True, preexec_fn=like_a_terminal)
        return Background(proc, out, err, label)

    def var(self, name: str) -> str | None:
        """A variable's value in the session now (None when unset)."""
        probe = subprocess.run(
            ["bash", "--norc", "--noprofile", "-c",
             f'source "$1"; [ -n "${{{name}+set}}" ] && printf %s "${name}" || exit 3',
             "probe", str(self.state)], env=self.env, capture_output=True, text=True,
            cwd=self.cwd)
        return probe.stdout if probe.returncode == 0 else None
