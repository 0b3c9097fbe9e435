"""Read README.md's commands the way a reader copies them, and say which cannot run.

``tests/test_readme.py`` runs every command this module extracts, in README order,
against a server the README itself starts. This module is the pure half: it finds the
fenced blocks, cuts ``sh`` blocks into commands (``\\`` continuations and here-documents
kept whole, comment-only lines dropped), keeps ``python`` blocks as scripts, and
reports, before anything runs, each command that a reader could not run as printed:
placeholders (``…``, ``<messageId>``, a bare ``ID``), programs the test does not know
(``jq`` among them), a command shown only inline in prose, a fence in an unknown
language. Each report names the README line and says how to make it runnable, so
whoever adds such a command is told by the first ``make test``.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"

#: Fence languages that are run, and those that only show something (never commands).
RUN_LANGUAGES = {"sh": "sh", "bash": "sh", "shell": "sh", "python": "python"}
SHOW_LANGUAGES = {
    "text": "file trees and sample output",
    "json": "request and answer bodies",
    "html": "markup pasted into a page (the browser SDK tests load it)",
    "javascript": "code pasted into a page (the browser SDK tests load it)",
    "js": "code pasted into a page (the browser SDK tests load it)",
}

#: Programs a README command may call. Anything else is reported instead of being run,
#: so a command that needs a tool this machine may lack is caught at once.
PROGRAMS = {
    ".venv/bin/millpond": "the CLI, from the virtualenv `make run` creates",
    ".venv/bin/python": "the virtualenv's Python (SDK examples, benchmarks)",
    "make": "the Makefile targets",
    "curl": "raw HTTP, as an app would send it",
    "export": "sets a variable for the commands after it",
    "cd": "", "cat": "", "echo": "", "printf": "", "head": "", "tail": "", "grep": "",
    "sed": "", "cut": "", "tr": "", "sort": "", "wc": "", "ls": "", "mkdir": "", "cp": "",
    "mv": "", "rm": "", "gzip": "", "test": "", "true": "",
}
#: Programs worth a specific hint when a README command calls them.
PROGRAM_HINTS = {
    "jq": "jq is not installed on every machine: print one value with the CLI's "
          "`--field PATH` (e.g. `--field write_key`) instead",
    "python": "use `.venv/bin/python`, the virtualenv `make run` sets up",
    "python3": "use `.venv/bin/python`, the virtualenv `make run` sets up",
    "millpond": "use `.venv/bin/millpond`: a new user has no `millpond` on PATH",
}

#: Commands that cannot run inside ``make test``, with the reason. Keep this short:
#: everything else in the README runs.
EXCLUDED = {
    r"^make test\b": "`make test` is what runs this test; running it here would recurse",
}

_FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)\s*$")
_HEREDOC = re.compile(r"<<-?\s*(['\"]?)(?P<word>[A-Za-z_]\w*)\1")
_ANGLE_PLACEHOLDER = re.compile(r"<[A-Za-z][\w.-]*>")
_CAPS_PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]+$")
_INLINE_CODE = re.compile(r"(?<!`)`([^`]+)`(?!`)")
_INLINE_COMMAND = re.compile(r"^\s*(\.venv/bin/|curl\s)")
_EXIT_STATUS = re.compile(r"\bexit status (\d+)\b")
_SEPARATORS = {"|", "||", "&&", ";", "&", "(", "$("}


@dataclass(frozen=True)
class Step:
    """One thing a reader runs: a shell command (maybe several lines) or a Python block."""

    kind: str  # "sh" or "python"
    text: str  # what bash (or Python) gets, continuations and here-documents included
    line: int  # README line of its first line
    comment: str = ""  # the trailing ``# ...`` of a shell command, if any

    @property
    def shown(self) -> str:
        """One line for messages: continuations joined, here-document bodies left out."""
        if self.kind == "python":
            return f"python block: {self.text.strip().splitlines()[0]} …"
        head = self.text.split("\n")
        if _HEREDOC.search(head[0]):
            return head[0].strip() + " … (here-document)"
        return " ".join(part.rstrip("\\").strip() for part in head)

    @property
    def expected_status(self) -> int:
        """0, unless the README's comment on the command says ``exit status N``."""
        found = _EXIT_STATUS.search(self.comment)
        return int(found.group(1)) if found else 0


@dataclass
class Readme:
    steps: list[Step] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def parse(text: str, name: str = "README.md") -> Readme:
    """Every runnable step in order, and every problem that keeps one from running."""
    out = Readme()
    lines = text.split("\n")
    prose: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            prose.append((i + 1, lines[i]))
            i += 1
            continue
        fence, lang, start = match.group("fence"), match.group("lang").lower(), i + 1
        end = start
        while end < len(lines) and not lines[end].startswith(fence):
            end += 1
        body = lines[start:end]
        i = end + 1
        kind = RUN_LANGUAGES.get(lang)
        if kind == "sh":
            _shell_steps(body, start + 1, name, out)
        elif kind == "python":
            out.steps.append(Step("python", "\n".join(body) + "\n", start + 1))
            _check_python(out.steps[-1], name, out)
        elif lang not in SHOW_LANGUAGES:
            shown = f"```{lang}" if lang else "``` (no language)"
            out.problems.append(
                f"{name} line {start}: a {shown} block: the walk-through test does not know "
                f"whether to run it. Tag it ```sh or ```python to have it run, or one of "
                f"{', '.join(f'```{k}' for k in SHOW_LANGUAGES)} if it only shows something.")
    _check_inline(prose, name, out)
    return out


def _shell_steps(body: list[str], first_line: int, name: str, out: Readme) -> None:
    j = 0
    while j < len(body):
        line = body[j]
        if not line.strip() or line.lstrip().startswith("#"):
            j += 1
            continue
        start = j
        parts = [line]
        while parts[-1].endswith("\\") and j + 1 < len(body):
            j += 1
            parts.append(body[j])
        heredoc = _HEREDOC.search(_code_part(parts[0]))
        if heredoc:
            word, strip_tabs = heredoc.group("word"), "<<-" in parts[0]
            while j + 1 < len(body):
                j += 1
                parts.append(body[j])
                if (body[j].lstrip("\t") if strip_tabs else body[j]) == word:
                    break
            else:
                out.problems.append(f"{name} line {first_line + start}: here-document "
                                    f"never ends: add a line `{word}` before the fence.")
        j += 1
        code_line = parts[0] if heredoc else parts[-1]
        step = Step("sh", "\n".join(parts), first_line + start, _comment_of(code_line))
        out.steps.append(step)
        out.problems.extend(check_command(step, name))


def _code_part(line: str) -> str:
    """``line`` without its trailing comment (quotes respected)."""
    comment = _comment_of(line)
    return line[: len(line) - len(comment)].rstrip() if comment else line


def _comment_of(line: str) -> str:
    """The ``# ...`` that ends ``line`` outside quotes, as bash reads it, or ``""``."""
    quote = None
    escaped = False
    for k, ch in enumerate(line):
        if escaped:
            escaped = False
        elif ch == "\\" and quote != "'":
            escaped = True
        elif quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (k == 0 or line[k - 1].isspace()):
            return line[k:]
    return ""


def _words(text: str) -> list[str] | None:
    """Shell words and operators of ``text`` (comments dropped), or None if unbalanced."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|()")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        words = list(lexer)
    except ValueError:
        return None
    # ``$(`` arrives as a word ending in ``$`` followed by ``(``: mark the ``(`` as ``$(``.
    fixed: list[str] = []
    for word in words:
        if word.startswith("(") and fixed and fixed[-1].endswith("$"):
            fixed[-1] = fixed[-1][:-1]
            if not fixed[-1]:
                fixed.pop()
            fixed.append("$(")
            word = word[1:]
            if not word:
                continue
        fixed.append(word)
    return fixed


def check_command(step: Step, name: str = "README.md") -> list[str]:
    """Why ``step`` (a shell command) cannot run as printed; empty when it can."""
    where = f"{name} line {step.line}: `{step.shown}`"
    head = step.text.split("\n")[0] if _HEREDOC.search(step.text.split("\n")[0]) else step.text
    code = "\n".join(_code_part(line) for line in head.split("\n"))
    problems: list[str] = []
    if "…" in code:
        problems.append(f"{where}: `…` stands for a value the reader must fill in. Make the "
                        "command produce it, e.g. `export X=$(.venv/bin/millpond ... --field "
                        "id)`, or write a real example value.")
    for placeholder in _ANGLE_PLACEHOLDER.findall(code):
        problems.append(f"{where}: `{placeholder}` is a placeholder. Use a real value or a "
                        "variable set by an earlier command (`--field PATH` prints one value "
                        "of any --json answer).")
    words = _words(code.replace("\\\n", " "))
    if words is None:
        return [*problems, f"{where}: unbalanced quotes; bash could not run it either."]
    at_command, previous = True, ""
    for word in words:
        if word in _SEPARATORS:
            at_command, previous = True, word
            continue
        if at_command:
            if re.match(r"^[A-Za-z_]\w*=", word):  # VAR=value before a command
                previous = word
                continue
            at_command = False
            if word not in PROGRAMS:
                hint = PROGRAM_HINTS.get(word, "add it to PROGRAMS in tests/readme_commands.py "
                                               "if every machine has it")
                if previous == "|" and word not in PROGRAM_HINTS:
                    hint += " (to show alternatives like `pause|resume`, write one command "
                    hint += "per line)"
                problems.append(f"{where}: the walk-through test does not know the program "
                                f"`{word}`: {hint}.")
        elif (_CAPS_PLACEHOLDER.match(word) and not previous.startswith("-")
              and previous not in ("<<", "<<-", "<", ">", ">>", "export")):
            problems.append(f"{where}: `{word}` looks like a placeholder. Use a variable "
                            f"set by an earlier command (`\"${word}\"`) or a real value.")
        previous = word
    return problems


def _check_python(step: Step, name: str, out: Readme) -> None:
    for number, line in enumerate(step.text.split("\n"), step.line):
        code = line.split("#", 1)[0]
        if "…" in code or _ANGLE_PLACEHOLDER.search(code):
            out.problems.append(
                f"{name} line {number}: `{line.strip()}` has a placeholder. Read the value "
                "from the environment (`os.environ[\"WRITE_KEY\"]`, exported by an earlier "
                "command) or write a real one.")


def _check_inline(prose: list[tuple[int, str]], name: str, out: Readme) -> None:
    text = "\n".join(line for _, line in prose)
    numbers = [number for number, _ in prose]
    for match in _INLINE_CODE.finditer(text):
        if _INLINE_COMMAND.match(match.group(1)):
            line = numbers[text.count("\n", 0, match.start())]
            shown = " ".join(match.group(1).split())
            out.problems.append(
                f"{name} line {line}: `{shown}` is a command shown only inline, so no test "
                "runs it. Put it in a ```sh block (the prose can point to it).")


def excluded(step: Step) -> str | None:
    """The reason ``step`` is not run inside ``make test``, or None."""
    if step.kind != "sh":
        return None
    return next((why for pattern, why in EXCLUDED.items() if re.search(pattern, step.text)),
                None)


def load(path: Path = README) -> Readme:
    return parse(path.read_text(encoding="utf-8"), path.name)
