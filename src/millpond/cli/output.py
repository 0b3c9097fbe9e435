"""Shared output helpers: humans get tables, scripts get ``--json``, errors get one line."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

#: Markup is off by default: what is printed is mostly the user's own text (names, event
#: types, CSV columns like ``tags[bold]``), which must print as written and can never be a
#: MarkupError. A line that wants style says ``markup=True`` and escapes what it inserts.
console = Console(markup=False, highlight=False)
err_console = Console(stderr=True, markup=False, highlight=False)

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
        click.echo(json.dumps(data, indent=2, sort_keys=False, default=str, ensure_ascii=False))
        return
    for value in pick(data, path):
        click.echo(value if isinstance(value, str)
                   else json.dumps(value, default=str, ensure_ascii=False))


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


#: Columns whose values are identifiers a user copies (never cut, never folded when the
#: terminal has room): by name, or by their ending.
KEY_COLUMNS = frozenset({"id", "messageId", "write_key", "site_id", "key", "seq"})
_KEY_ENDINGS = ("_id", "Id", "_key")


def is_key_column(name: str) -> bool:
    return name in KEY_COLUMNS or name.endswith(_KEY_ENDINGS)


def cell(value: Any) -> str:
    """A value as one table cell: None empty, everything else as text."""
    return "" if value is None else str(value)


def print_table(rows: list[dict[str, Any]], columns: list[str], title: str | None = None) -> None:
    """Rows as a table for a person, or as tab-separated lines when stdout is not a
    terminal (a pipe, a file): a header, then one line per row with every value whole.

    On a terminal, id and key columns keep their full width (:func:`is_key_column`); the
    other columns wrap, and a long word in them folds, so nothing is cut with an ellipsis.
    """
    if not console.is_terminal:
        if title:
            write_stdout(f"# {title}")
        write_stdout("\t".join(columns))
        for row in rows:
            write_stdout("\t".join(_flat(cell(row.get(c))) for c in columns))
        return
    table = Table(title=title)
    for col in columns:
        if is_key_column(col):
            widest = max([len(col), *(len(cell(r.get(col))) for r in rows)])
            table.add_column(col, no_wrap=True, min_width=widest, overflow="fold")
        else:
            table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*(cell(row.get(c)) for c in columns))
    console.print(table)


def _flat(text: str) -> str:
    """One TSV field: tabs and line breaks would split it, so they become spaces."""
    return text.replace("\t", " ").replace("\r", " ").replace("\n", " ")


def write_stdout(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
