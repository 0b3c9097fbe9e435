"""``millpond people``: the twin of ``/api/people``."""

from __future__ import annotations

import json

import click

from millpond.cli.common import api_command, connection_options, json_option, twin_of
from millpond.cli.output import console, print_json, print_table


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
    """Show a person by user id, anonymous id or profile id, with each trait's time and
    the segments they are in."""
    person = client.get(f"/api/people/{person_id}")
    if as_json:
        print_json(person)
        return
    console.print(f"{person['id']}  user_id={person.get('user_id')}  "
                  f"anonymous_ids={', '.join(person.get('anonymous_ids') or []) or '-'}",
                  highlight=False)
    sources = person.get("trait_sources", {})
    times = person.get("trait_times", {})
    if not person.get("traits"):
        console.print("traits: none", highlight=False)  # only events name them, or all cleared
    else:
        print_table([{"trait": name, "value": _text(value), "set at": times.get(name),
                      **sources.get(name, {})}
                     for name, value in sorted(person["traits"].items())],
                    ["trait", "value", "set at", "seq", "source_id"])  # seq: the event that set it
    for group_id, traits in (person.get("groups") or {}).items():
        console.print(f"group {group_id}: {_text(traits)}", highlight=False)
    segments = person.get("segments") or []
    console.print("segments: " + (", ".join(f"{s['key']} (since {s['since']})"
                                            for s in segments) or "none"),
                  highlight=False, soft_wrap=True)


def _text(value: object) -> str:
    """A trait's value as the API sends it: text as is, anything else as JSON (an
    object's Python repr, ``{'city': 'Oslo'}`` or ``True``, is not what was sent)."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _row(person: dict) -> dict:
    traits = person.get("traits") or {}
    return {"id": person["id"], "user_id": person.get("user_id") or "",
            "anonymous_ids": ", ".join(person.get("anonymous_ids") or []),
            "email": str(traits.get("email", "")), "name": str(traits.get("name", ""))}


def _print_page(data: dict, as_json: bool) -> None:
    if as_json:
        print_json(data)
        return
    if not data["people"]:
        console.print("no person found", highlight=False)
        return
    print_table([_row(p) for p in data["people"]],
                ["id", "user_id", "anonymous_ids", "email", "name"])
    if data.get("next_cursor"):
        console.print(f"more: add --cursor {data['next_cursor']}", highlight=False)


_limit = click.option("--limit", default=50, show_default=True, help="People per page.")
_cursor = click.option("--cursor", default=None, help="next_cursor of the previous page.")


@people.command("list")
@twin_of("GET /api/people")
@_limit
@_cursor
@json_option
@api_command
def list_(limit: int, cursor: str | None, as_json: bool, client) -> None:
    """List everyone, a page at a time."""
    _print_page(client.get("/api/people", {"limit": limit, "cursor": cursor}), as_json)


@people.command("search")
@twin_of("GET /api/people")
@click.argument("query")
@_limit
@_cursor
@json_option
@api_command
def search(query: str, limit: int, cursor: str | None, as_json: bool, client) -> None:
    """Find people by user id, anonymous id, email or any trait value (the start of the
    value or of one of its words; any case)."""
    _print_page(client.get("/api/people", {"query": query, "limit": limit,
                                           "cursor": cursor}), as_json)
