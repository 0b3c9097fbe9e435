"""The README walk-through, run as written: every command, in order, as a new user would.

Why: the walk-through rotted once (placeholders nobody could paste, destination settings
the server refused) because nothing ran it. ``tests/readme_commands.py`` extracts every
command of README.md's fenced blocks; this test runs them in README order in a
throwaway folder that looks like a fresh clone (the repository's ``.venv``,
``Makefile``, ``pyproject.toml`` and ``bench/`` linked in), through bash, with the
session's variables carried from one command to the next (``tests/readme_shell.py``).
The server is the one the README starts (``make run``), never a fixture, and so is the
receiver the README's destinations post to.

The only rewriting is of ports: the README's 8787 (server) and 9000 (receiver) become
free ports, so parallel runs and leftover servers cannot interfere; ``MILLPOND_PORT``
and ``MILLPOND_URL`` tell ``make run`` and the CLI. ``MILLPOND_BENCH_QUICK=1`` makes the
benchmark commands run at a smoke-test size.

Every command must exit 0 (or with the status its README comment gives as ``exit status
N``), and the commands in :data:`CHECKS` also have their key output checked, so a
command that "succeeds" at the wrong thing fails too. A command that cannot run as
printed fails the test before anything starts, with its README line and how to fix it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.readme_commands import README, Step, check_command, excluded, load, parse
from tests.readme_shell import Background, Result, Shell
from tests.support.server import free_port

ROOT = README.parent
#: What a fresh clone has that the README's commands use (nothing else is linked in).
CHECKOUT_LINKS = (".venv", "Makefile", "pyproject.toml", "bench")
#: The ports the README names: the server's and the receiver's.
SERVER_PORT, RECEIVER_PORT = 8787, 9000

#: Commands that run until stopped, by what they are. A ``server`` or ``service`` is a
#: terminal of its own: started in the background, left running, stopped (Ctrl-C, by
#: PID) at the end; a new ``server`` first stops the previous one, as a reader would.
#: ``follow`` runs until Ctrl-C in the reader's terminal.
BACKGROUND = {
    r"^make run\b|/millpond serve\b(?!.*--print-config)": "server",
    r"^\.venv/bin/python receiver\.py\b": "service",
    r"/millpond events tail\b.*(--follow|\s-f\b)": "follow",
}
#: Limits for a command that hangs, not speed bounds: generous, because ``make test`` runs
#: this beside another test process on a machine other jobs share.
COMMAND_TIMEOUT = 60.0
BENCH_TIMEOUT = 180.0
START_TIMEOUT = 120.0


@dataclass
class Walk:
    """One walk-through: the reader's terminal and what runs in the other ones."""

    shell: Shell
    port: int
    receiver_port: int
    checkout: Path
    server: Background | None = None
    services: list[Background] = field(default_factory=list)
    notes: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def admin(self, method: str, path: str, **kwargs) -> httpx.Response:
        """The admin API with the token the README exported (to check what commands did)."""
        token = self.shell.var("MILLPOND_ADMIN_TOKEN") or ""
        return httpx.request(method, self.url + path, timeout=10,
                             headers={"Authorization": f"Bearer {token}"}, **kwargs)

    def received(self, needle: str, timeout: float = 20.0) -> list[str]:
        """Lines of the README's receiver with ``needle``, waiting up to ``timeout``."""
        [receiver] = [s for s in self.services if "receiver.py" in s.label]
        deadline = time.monotonic() + timeout
        while True:
            lines = [x for x in receiver.stdout().splitlines() if needle in x]
            if lines or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

    def server_log(self) -> str:
        return self.server.output()[-3000:] if self.server else "(no server running)"


# -- what the README promises, checked on each command's output -----------------------------
Check = Callable[[Walk, Step, Result], None]


def contains(*needles: str) -> Check:
    def check(walk: Walk, step: Step, result: Result) -> None:
        for needle in needles:
            assert needle in result.stdout, f"expected {needle!r} in the output"
    return check


def var_is(name: str, expected: Callable[[Walk], str]) -> Check:
    def check(walk: Walk, step: Step, result: Result) -> None:
        value, want = walk.shell.var(name), expected(walk)
        assert value == want, f"${name} is {value!r}, expected {want!r}"
    return check


def created_source(name: str) -> Check:
    def check(walk: Walk, step: Step, result: Result) -> None:
        assert f"created source {name}" in result.stdout
        [line] = [x for x in result.stdout.splitlines() if x.startswith("write key:")]
        walk.notes[f"key:{name}"] = line.split(":", 1)[1].strip()
    return check


def sdk_events_stored(walk: Walk, step: Step, result: Result) -> None:
    events = walk.admin("GET", "/api/events", params={"user_id": "user-42"}).json()["events"]
    assert {"identify", "track"} <= {e["type"] for e in events}, events
    assert "Order Completed" in {e.get("event") for e in events}, events


def snippet_for_this_server(walk: Walk, step: Step, result: Result) -> None:
    """The snippet names this server and the source's write key (as ``$WRITE_KEY`` holds)."""
    contains(f"127.0.0.1:{walk.port}")(walk, step, result)
    assert walk.shell.var("WRITE_KEY") in result.stdout, "the write key is not in the snippet"


def track_listed(walk: Walk, step: Step, result: Result) -> None:
    events = json.loads(result.stdout)["events"]
    assert {"Signed Up", "Order Completed"} <= {e["event"] for e in events}, events


def first_message_id(walk: Walk) -> str:
    r = walk.admin("GET", "/api/events", params={"user_id": "user-42", "limit": 1})
    return r.json()["events"][0]["messageId"]


def payload_shown(walk: Walk, step: Step, result: Result) -> None:
    contains("Send event", "X-Millpond-Signature", f"127.0.0.1:{walk.receiver_port}/hook",
             first_message_id(walk))(walk, step, result)


def preview_clean(walk: Walk, step: Step, result: Result) -> None:
    contains("Replay preview for amplitude", "estimated duration", "send via")(
        walk, step, result)
    assert "error (" not in result.stdout, "the preview shows mapping errors"


def replay_completed(walk: Walk, step: Step, result: Result) -> None:
    assert "completed" in result.stdout
    [replay] = walk.admin("GET", "/api/replays", params={"destination": "amplitude"}).json()[
        "replays"]
    progress = replay["progress"]
    assert replay["state"] == "completed" and progress["dead_lettered"] == 0, replay
    assert progress["sent"] >= 3, replay
    walk.notes["replay"] = replay["id"]
    assert walk.received("POST /2/httpapi"), "the receiver got nothing from the replay"


def imported(path: str) -> Check:
    def check(walk: Walk, step: Step, result: Result) -> None:
        rows = len((walk.checkout / path).read_text().strip().splitlines())
        rows -= 1 if path.endswith(".csv") else 0
        accepted = re.search(r"events accepted\D*(\d+)", result.stdout)
        rejected = re.search(r"rows rejected\D*(\d+)", result.stdout)
        assert accepted and int(accepted.group(1)) == rows, f"expected {rows} accepted"
        assert rejected and rejected.group(1) == "0"
    return check


def upload_deduped(walk: Walk, step: Step, result: Result) -> None:
    """The upload (``wait=true``) finished, and found the CLI's import of the same file
    with the same options already stored: same rows, same messageIds."""
    job = json.loads(result.stdout)
    assert job["state"] == "completed", job
    summary = job["summary"]
    assert (summary["rows_read"], summary["events_accepted"], summary["duplicates"]) == (
        2, 0, 2), summary


def profile_merged(walk: Walk, step: Step, result: Result) -> None:
    """The SDK's newer identify keeps ``plan: pro`` over users.csv's older ``free``."""
    contains("ada@example.com", "Ada Lovelace")(walk, step, result)
    _match(result.stdout, r"^\W*plan\W+pro\b")  # a table's cells or a pipe's TSV


def _match(value: str | None, pattern: str) -> None:
    assert value is not None and re.search(pattern, value, re.MULTILINE), (
        f"{value!r} does not match {pattern!r}")


#: ``regex on the command`` -> what its output must show. Every entry must match a README
#: command (checked before the walk-through starts), so a check cannot silently lapse.
CHECKS: dict[str, Check] = {
    r"sources add website": created_source("website"),
    r"^export WRITE_KEY=": var_is("WRITE_KEY", lambda w: w.notes["key:website"]),
    r"^curl .*/v1/track": lambda w, s, r: _match(r.stdout, r'\A\{"success":true\}\s*\Z'),
    r"(?s)^python:.*analytics": sdk_events_stored,
    r"sources snippet website --sdk": snippet_for_this_server,
    r"sources update website --allowed-origin": contains("https://www.example.com"),
    r"events tail --follow": contains("Signed Up", "Tail Followed"),
    r"events list --type track --user-id user-42 --json": track_listed,
    r"events list --event 'Order Completed' --newest": contains("Order Completed", "user-42"),
    r"destinations types": contains("webhook", "amplitude", "mixpanel"),
    r"destinations add hook\b": contains("created destination hook"),
    r"destinations add product-analytics\b": contains("created destination product-analytics"),
    r"destinations list$": contains("hook", "product-analytics"),
    r"destinations stats product-analytics": contains("product-analytics", "delivery"),
    r"^export MESSAGE_ID=": var_is("MESSAGE_ID", first_message_id),
    r"destinations test hook": payload_shown,
    r"dead-letters redrive hook": contains("redriving 0 dead letter(s)"),
    r"destinations add amplitude\b": contains("created destination amplitude"),
    r"replay preview amplitude": preview_clean,
    r"replay start amplitude .*--watch": replay_completed,
    r"replay list --destination amplitude": lambda w, s, r: contains(w.notes["replay"])(w, s, r),
    r"^export REPLAY_ID=": lambda w, s, r: _match(w.shell.var("REPLAY_ID"), r"^rpl_\w+$"),
    r"replay pause": contains("paused"),
    r"replay status .*--watch": contains("paused"),
    r"replay resume": contains("running"),
    r"replay cancel": contains("cancelled"),
    r"destinations add lake\b": contains("created destination lake", "after seq 0"),
    r"segments preview --definition": contains("user-42", "user-7", "would be a member",
                                               "[yes] event 'Order Completed'"),
    r"destinations add audiences\b": contains("created destination audiences"),
    r"segments add buyers\b": contains("buyers"),
    r"segments why user-42 pro-buyers": contains("plan", "buyers"),
    r"destinations stats lake": contains("cursor"),
    r"replay start lake": lambda w, s, r: _match(
        r.stderr, r"first sync already includes history; create a new destination"),
    r"sources add crm": created_source("crm"),
    r"import people users\.csv": imported("users.csv"),
    r"import events orders\.csv": imported("orders.csv"),
    r"import events history\.jsonl": imported("history.jsonl"),
    r"^curl .*/api/imports": upload_deduped,
    r"import list$": contains("users.csv", "completed"),
    r"import status .*--watch": lambda w, s, r: _match(
        r.stdout, r"^import imp_\w+: completed \(people from users\.csv"),
    r"people show user-42": profile_merged,
    r"regulations add suppress_with_delete": contains("suppress_with_delete of"),
    r"regulations show": contains("store events", "requested_by", "privacy@example.com"),
    r"people search lovelace": contains("user-42", "ada@example.com"),
    r"people list --limit 10": contains("user-42\n", "user-7\n"),
    r"serve --config millpond\.toml --print-config": contains(
        'format = "json"  # env MILLPOND_LOGGING_FORMAT', "[http]\nhead_timeout = 10.0"),
    r"^MILLPOND_PROT=": lambda w, s, r: _match(
        r.stderr, r"\Aerror: unknown environment variable MILLPOND_PROT .*MILLPOND_PORT"),
    r"bench/ingest\.py": contains("/v1/batch x100"),
    r"bench/deliver\.py --http": contains("over loopback HTTP"),
    r"bench/import\.py": contains("ratio b/a"),
    r"bench/replay\.py": contains("replay limited"),
    r"bench/console\.py": contains("slowest page"),
    r"bench/segments\.py": contains("ratio to raw scan", "membership update delay",
                                     "taken up from the state the stop saved",
                                     "outputs alone"),
}


def label(step: Step) -> str:
    """How :data:`CHECKS` see a step: the command, or ``python: <source>``."""
    return "python: " + step.text if step.kind == "python" else step.shown


# -- running the walk-through ----------------------------------------------------------------
def substitute_ports(text: str, ports: dict[int, int]) -> str:
    """The one rewrite allowed: the README's ports become this run's free ones."""
    for old, new in ports.items():
        text = re.sub(rf"(?<!\d){old}(?!\d)", str(new), text)
    return text


def mode(step: Step) -> str:
    if step.kind == "python":
        return "foreground"
    return next((kind for pattern, kind in BACKGROUND.items() if re.search(pattern, step.text)),
                "foreground")


def report(step: Step, why: str, walk: Walk, result: Result | None = None) -> str:
    out = [f"README.md line {step.line}: `{step.shown}`: {why}"]
    if result is not None:
        out += [f"--- exit status {result.status}; stdout ---", result.stdout[-3000:],
                "--- stderr ---", result.stderr[-3000:]]
    out += ["--- server output (last lines) ---", walk.server_log()]
    return "\n".join(out)


def start_server(walk: Walk, step: Step, command: str) -> None:
    if walk.server is not None:
        walk.server.interrupt()
        assert not walk.server.running(), report(step, "the previous server did not stop", walk)
    walk.server = walk.shell.start(command, label=f"README.md line {step.line}")
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        assert walk.server.running(), report(step, "the server exited", walk)
        try:
            if httpx.get(walk.url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, report(step, "the server did not answer", walk)
        time.sleep(0.1)
    if walk.shell.var("MILLPOND_ADMIN_TOKEN") is None:
        # "On first start it prints an admin token and stores it in .millpond/admin_token"
        stored = walk.checkout / ".millpond" / "admin_token"
        assert stored.exists(), report(step, f"no admin token in {stored}", walk)
        walk.server.wait_for(stored.read_text().strip(), 10, "the first start")
    else:
        assert walk.admin("GET", "/api/sources").status_code == 200, report(
            step, "the exported MILLPOND_ADMIN_TOKEN is refused", walk)


def start_service(walk: Walk, step: Step, command: str) -> None:
    """A helper the README starts in a terminal of its own: ready once it prints."""
    service = walk.shell.start(command, label=f"README.md line {step.line}: {step.shown}")
    walk.services.append(service)
    deadline = time.monotonic() + START_TIMEOUT
    while not service.stdout().strip():
        assert service.running(), report(step, f"it exited:\n{service.output()}", walk)
        assert time.monotonic() < deadline, report(step, "it printed nothing", walk)
        time.sleep(0.05)


def follow(walk: Walk, step: Step, command: str) -> Result:
    """``events tail --follow``: the stored events, then one sent meanwhile (as from
    another terminal), until Ctrl-C."""
    tail = walk.shell.start(command, label=f"README.md line {step.line}")
    try:
        tail.wait_for("Signed Up", 20, "`events tail --follow`")
        key = walk.shell.var("WRITE_KEY") or ""
        sent = httpx.post(walk.url + "/v1/track", auth=(key, ""), timeout=10,
                          json={"userId": "user-43", "event": "Tail Followed"})
        assert sent.status_code == 200, sent.text
        tail.wait_for("Tail Followed", 20, "`events tail --follow` (a new event)")
    finally:
        status = tail.interrupt(timeout=10)
    return Result(status if status is not None else -1, tail.stdout(),
                  tail.err_path.read_text(errors="replace"))


def run_step(walk: Walk, step: Step, ports: dict[int, int]) -> Result | None:
    """Run one step as the reader would; None for what keeps running in its own terminal."""
    if step.kind == "python":
        script = walk.shell.scratch / f"readme-line-{step.line}.py"
        script.write_text(substitute_ports(step.text, ports))
        return walk.shell.run(f".venv/bin/python {script}", COMMAND_TIMEOUT)
    command = substitute_ports(step.text, ports)
    kind = mode(step)
    if kind == "server":
        start_server(walk, step, command)
        return None
    if kind == "service":
        start_service(walk, step, command)
        return None
    if kind == "follow":
        return follow(walk, step, command)
    return walk.shell.run(command, BENCH_TIMEOUT if "bench/" in command else COMMAND_TIMEOUT)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """An empty folder with what a clone has that the README's commands use."""
    setup = subprocess.run(["make", "-C", str(ROOT), "--no-print-directory", "-s", "setup"],
                           capture_output=True, text=True, timeout=600)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    folder = tmp_path / "millpond"
    folder.mkdir()
    for name in CHECKOUT_LINKS:
        (folder / name).symlink_to(ROOT / name)
    # `make run` must find the virtualenv up to date, or it would reinstall it from here.
    fresh = subprocess.run(["make", "-q", ".venv/.installed"], cwd=folder, capture_output=True)
    assert fresh.returncode == 0, "the virtualenv is older than pyproject.toml: run make setup"
    return folder


def session_env(port: int) -> dict[str, str]:
    """The user's environment, minus any millpond settings of the machine running this."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILLPOND_")}
    env.update(MILLPOND_PORT=str(port), MILLPOND_URL=f"http://127.0.0.1:{port}",
               MILLPOND_BENCH_QUICK="1", COLUMNS="200", NO_COLOR="1")
    return env


@pytest.mark.slow
def test_readme_walkthrough(checkout: Path, tmp_path: Path) -> None:
    readme = load()
    assert not readme.problems, "README commands that cannot run as printed:\n" + "\n".join(
        readme.problems)
    labels = [label(step) for step in readme.steps]
    unused = [p for p in CHECKS if not any(re.search(p, text) for text in labels)]
    assert not unused, f"CHECKS entries that match no README command (update them): {unused}"

    port, receiver_port = free_port(), free_port()
    while receiver_port == port:
        receiver_port = free_port()
    ports = {SERVER_PORT: port, RECEIVER_PORT: receiver_port}
    walk = Walk(Shell(checkout, tmp_path / "shell", session_env(port)), port, receiver_port,
                checkout)
    ran = 0
    try:
        for step in readme.steps:
            if excluded(step):
                continue
            result = run_step(walk, step, ports)
            ran += 1
            if result is None:
                continue
            assert result.status == step.expected_status, report(
                step, f"exit status {result.status}, expected {step.expected_status}", walk,
                result)
            assert "Traceback (most recent call last)" not in result.stderr, report(
                step, "a traceback on stderr", walk, result)
            for pattern, check in CHECKS.items():
                if re.search(pattern, label(step)):
                    try:
                        check(walk, step, result)
                    except AssertionError as exc:
                        raise AssertionError(report(step, str(exc), walk, result)) from None
        # Live delivery: the webhook, connected before the imports, got them, signed.
        hooks = walk.received("POST /hook ")
        assert hooks, "the webhook destination delivered nothing to the receiver"
        assert all(" sha256=" in line for line in hooks), hooks
    finally:
        for process in [*walk.services, walk.server]:
            if process is not None:
                process.interrupt()
    assert not walk.server.running(), "the server did not stop on Ctrl-C"
    assert ran == len(readme.steps) - 1  # all but `make test`


# -- the extractor: what a later README edit is told -------------------------------------
def test_the_readme_has_only_runnable_commands() -> None:
    readme = load()
    assert not readme.problems, "\n".join(readme.problems)
    assert [excluded(s) is not None for s in readme.steps].count(True) == 1  # make test
    assert readme.steps[0].text.startswith("make run") and "make test" in readme.steps[1].text


def test_commands_are_cut_as_bash_reads_them() -> None:
    readme = parse("\n".join([
        "Intro with `make test` inline.",
        "```sh",
        "# a comment line",
        "export A=1   # set it",
        "curl -d '{\"a\": \"#not a comment\"}' \\",
        "  http://127.0.0.1:8787/v1/track   # exit status 3",
        "cat > f.csv <<'EOF'",
        "id,# not a comment",
        "EOF",
        "",
        "```",
        "```python",
        "print('hi')",
        "```",
        "```text",
        "anything <here> …",
        "```",
    ]))
    assert readme.problems == []
    texts = [s.text for s in readme.steps]
    assert texts == [
        "export A=1   # set it",
        "curl -d '{\"a\": \"#not a comment\"}' \\\n  http://127.0.0.1:8787/v1/track   "
        "# exit status 3",
        "cat > f.csv <<'EOF'\nid,# not a comment\nEOF",
        "print('hi')\n",
    ]
    assert [s.line for s in readme.steps] == [4, 5, 7, 13]
    assert [s.expected_status for s in readme.steps] == [0, 3, 0, 0]
    assert readme.steps[1].shown == ("curl -d '{\"a\": \"#not a comment\"}' "
                                     "http://127.0.0.1:8787/v1/track   # exit status 3")
    assert substitute_ports(texts[1], {8787: 40001}).endswith(
        "127.0.0.1:40001/v1/track   # exit status 3")


@pytest.mark.parametrize(("command", "needle"), [
    ("export WRITE_KEY=…   # the key printed above", "`…` stands for a value"),
    (".venv/bin/millpond destinations test hook --message-id <messageId>",
     "`<messageId>` is a placeholder"),
    (".venv/bin/millpond replay status ID --watch", "`ID` looks like a placeholder"),
    (".venv/bin/millpond replay pause|resume|cancel \"$R\"",
     "does not know the program `resume`"),
    (".venv/bin/millpond sources show web --json | jq -r .write_key",
     "with the CLI's `--field PATH`"),
    ("millpond sources list", "use `.venv/bin/millpond`"),
    ("export K=$(python3 -c 'print(1)')", "use `.venv/bin/python`"),
    ("echo 'unbalanced", "unbalanced quotes"),
])
def test_unrunnable_commands_are_reported(command: str, needle: str) -> None:
    problems = check_command(Step("sh", command, 7))
    assert problems and any(needle in p for p in problems), problems
    assert all(p.startswith(f"README.md line 7: `{command}`") for p in problems)


def test_these_are_runnable() -> None:
    for command in ['export W=$(.venv/bin/millpond sources show web --field write_key)',
                    '.venv/bin/millpond replay cancel "$REPLAY_ID"',
                    ".venv/bin/python bench/ingest.py --runs 3   # ID, …, <x> in a comment",
                    "MILLPOND_URL=http://127.0.0.1:8787 .venv/bin/millpond sources list",
                    ".venv/bin/millpond serve --sync FULL"]:
        assert check_command(Step("sh", command, 1)) == [], command


def test_unknown_blocks_and_inline_commands_are_reported() -> None:
    readme = parse("\n".join([
        "Upload with `curl -H 'A: b'",
        "http://127.0.0.1:8787/x` or `.venv/bin/millpond sources list`; `make test` is fine.",
        "```",
        "a tree",
        "```",
        "```console",
        "$ ls",
        "```",
        "```python",
        'key = "…"',
        "```",
    ]))
    assert len(readme.problems) == 5, readme.problems
    assert "line 3: a ``` (no language) block" in readme.problems[0]
    assert "line 6: a ```console block" in readme.problems[1]
    assert "line 10: `key = \"…\"` has a placeholder" in readme.problems[2]
    assert "line 1: `curl -H 'A: b' http://127.0.0.1:8787/x` is a command shown only " \
           "inline" in readme.problems[3]
    assert "line 2: `.venv/bin/millpond sources list` is a command shown only inline" in \
           readme.problems[4]
