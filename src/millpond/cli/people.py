"""``millpond people``: the twin of ``/api/people``."""

from __future__ import annotations

import click
from rich.table import Table

from millpond.cli.common import api_command, connection_options, json_option, twin_of
from millpond.cli.output import console, print_json


@click.group()
@connection_options
def people() -> None:
    """Look up profiles."""


@people.command("show")
@twin_of("GET /api/people/{person_id}")
@click.argument("person_id")
@json_option
@api_command
def show(person_id: str, as_json: bool, client) -> None:
    """Show a person by user id, anonymous id or profile id, with each trait's time."""
    person = client.get(f"/api/people/{person_id}")
    if as_json:
        print_json(person)
        return
    console.print(f"{person['id']}  user_id={person.get('user_id')}  "
                  f"anonymous_ids={', '.join(person.get('anonymous_ids') or []) or '-'}",
                  highlight=False)
    table = Table("trait", "value", "set at", "by event (messageId / seq / source)")
    sources = person.get("trait_sources", {})
    for name, value in sorted(person.get("traits", {}).items()):
        src = sources.get(name, {})
        table.add_row(name, str(value), str(person.get("trait_times", {}).get(name, "")),
                      f"{src.get('messageId', '')} / {src.get('seq', '')} / "
                      f"{src.get('source_id', '')}")
    console.print(table)
    for group_id, traits in (person.get("groups") or {}).items():
        console.print(f"group {group_id}: {traits}", highlight=False)
