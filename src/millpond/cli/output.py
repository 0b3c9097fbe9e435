"""Shared output helpers: humans get tables, scripts get ``--json``, errors get one line."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console()
err_console = Console(stderr=True)

#: Where ``--field`` (see :func:`millpond.cli.common.json_option`) leaves its path.
FIELD_META = "millpond.field"


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a one-line error (no traceback) and exit non-zero. The message is text, not
    markup: ``[delivery] timeout = 30.0`` in an example must print as written."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True,
                      soft_wrap=True)
    raise SystemExit(code)


def print_json(data: Any) -> None:
    """The whole answer as JSON, or only the ``--field`` the user asked for."""
    ctx = click.get_current_context(silent=True)
    path = ctx.meta.get(FIELD_META) if ctx is not None else None
    if path is None:
        click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))
        return
    for value in pick(data, path):
        click.echo(value if isinstance(value, str) else json.dumps(value, default=str))


def pick(data: Any, path: str) -> list[Any]:
    """The values at a dotted ``path`` of a JSON answer, one per line to print.

    Strings come out bare (so ``$(...)`` captures a write key as is). A list on the way,
    or at the end, yields one value per item, so ``events.messageId`` lists every
    event's id; a number picks one item (``events.0.messageId``). A missing field fails
    with the fields that do exist, instead of printing an empty line a script would
    take for a value.
    """
    values = [data]
    done: list[str] = []
    for part in path.split("."):
        if not part:
            fail(f"--field {path!r}: empty name between dots")
        values = [v for value in values for v in _step(value, part, done, path)]
        done.append(part)
    return [item for value in values for item in (value if isinstance(value, list) else [value])]


def _step(value: Any, part: str, done: list[str], path: str) -> list[Any]:
    where = ".".join(done) or "the answer"
    if isinstance(value, list):
        if part.isdigit():
            if int(part) >= len(value):
                fail(f"--field {path!r}: {where} has {len(value)} item(s), no item {part}")
            return [value[int(part)]]
        return [v for item in value for v in _step(item, part, done, path)]
    if isinstance(value, dict):
        if part not in value:
            fail(f"--field {path!r}: no field {part!r} in {where}; it has: "
                 f"{', '.join(value) or 'nothing'}")
        return [value[part]]
    fail(f"--field {path!r}: {where} is {json.dumps(value, default=str)}, not an object")


def print_table(rows: list[dict[str, Any]], columns: list[str], title: str | None = None) -> None:
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    console.print(table)


def write_stdout(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
