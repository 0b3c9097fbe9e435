"""``millpond dead-letters``: the twin of the dead-letter routes."""

from __future__ import annotations

import json

import click

from millpond.cli.common import api_command, connection_options, json_option, twin_of
from millpond.cli.output import console, print_json, print_table

COLUMNS = ["id", "seq", "message_id", "action", "status", "reason", "state", "created_at"]


@click.group("dead-letters")
@connection_options
def dead_letters() -> None:
    """Inspect and redrive events a destination could not take."""


@dead_letters.command("list")
@twin_of("GET /api/destinations/{ref}/dead-letters")
@click.argument("destination")
@click.option("--state", type=click.Choice(["dead", "redriving", "redriven", "all"]),
              default="dead", show_default=True)
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1000))
@json_option
@api_command
def list_(destination: str, state: str, limit: int, as_json: bool, client) -> None:
    """Dead letters of DESTINATION (id or name), oldest first."""
    data = client.get(f"/api/destinations/{destination}/dead-letters",
                      {"state": state, "limit": limit})
    if as_json:
        print_json(data)
        return
    rows = [{**r, "reason": r["reason"][:80]} for r in data["dead_letters"]]
    print_table(rows, COLUMNS)


@dead_letters.command("show")
@twin_of("GET /api/dead-letters/{dead_letter_id}")
@click.argument("dead_letter_id", type=int)
@json_option
@api_command
def show(dead_letter_id: int, as_json: bool, client) -> None:
    """One dead letter: reason, the vendor's answer and the payload that was refused."""
    data = client.get(f"/api/dead-letters/{dead_letter_id}")
    if as_json:
        print_json(data)
        return
    for key in ("id", "destination_id", "seq", "message_id", "action", "state", "created_at",
                "status", "reason", "response"):
        console.print(f"{key}: {data.get(key)}", highlight=False, markup=False)
    console.print("payload:", highlight=False)
    payload = json.dumps(data["payload"], indent=2, ensure_ascii=False)
    console.print(payload, highlight=False, markup=False)


@dead_letters.command("redrive")
@twin_of("POST /api/destinations/{ref}/dead-letters/redrive")
@click.argument("destination")
@click.option("--id", "ids", multiple=True, type=int,
              help="Only these dead letters (repeatable); default: all of the destination.")
@json_option
@api_command
def redrive(destination: str, ids: tuple[int, ...], as_json: bool, client) -> None:
    """Send dead letters again through the destination's current actions."""
    data = client.post(f"/api/destinations/{destination}/dead-letters/redrive",
                       {"ids": list(ids)} if ids else {})
    if as_json:
        print_json(data)
        return
    console.print(f"redriving {data['redriving']} dead letter(s) in the background",
                  highlight=False)
    for refused in data["refused"]:
        console.print(f"not redriven: {refused['id']}: {refused['reason']}", highlight=False)
