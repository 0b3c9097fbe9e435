"""``millpond regulations``: the twin of ``/api/regulations`` (suppress, delete)."""

from __future__ import annotations

import click

from millpond.cli.common import api_command, json_option, twin_of
from millpond.cli.output import console, fail, print_json, print_table

TYPES = ("suppress", "delete", "suppress_with_delete", "unsuppress")


@click.group()
def regulations() -> None:
    """Suppress or delete people everywhere millpond keeps or sends data."""


def _summary(reg: dict) -> dict:
    return {"id": reg["id"], "type": reg["type"], "state": reg["state"],
            "people": ", ".join(reg["user_ids"] + reg["anonymous_ids"]),
            "requested_by": reg["requested_by"], "created_at": reg["created_at"],
            "suppressed": reg["suppressed"]}


@regulations.command("add")
@twin_of("POST /api/regulations")
@click.argument("type_", metavar="TYPE", type=click.Choice(TYPES))
@click.option("--user-id", "user_ids", multiple=True, help="A user id (repeatable).")
@click.option("--anonymous-id", "anonymous_ids", multiple=True,
              help="An anonymous id (repeatable).")
@click.option("--requested-by", default=None,
              help="Who asked, for the audit (an email, a ticket).")
@json_option
@api_command
def add(type_: str, user_ids: tuple[str, ...], anonymous_ids: tuple[str, ...],
        requested_by: str | None, as_json: bool, client) -> None:
    """Suppress, delete (or both), or lift a suppression of the people these ids belong
    to (each whole profile)."""
    if not user_ids and not anonymous_ids:
        fail("name at least one person: --user-id ID and/or --anonymous-id ID")
    body: dict = {"type": type_, "user_ids": list(user_ids),
                  "anonymous_ids": list(anonymous_ids), "requested_by": requested_by or "cli"}
    reg = client.post("/api/regulations", json=body)
    if as_json:
        print_json(reg)
        return
    console.print(f"regulation {reg['id']}: {reg['type']} of {len(reg['ids'])} ids, "
                  f"{reg['state']}", highlight=False)


@regulations.command("list")
@twin_of("GET /api/regulations")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1000))
@json_option
@api_command
def list_(limit: int, as_json: bool, client) -> None:
    """Regulations, newest first."""
    data = client.get("/api/regulations", params={"limit": limit})
    if as_json:
        print_json(data)
        return
    print_table([_summary(r) for r in data["regulations"]],
                ["id", "type", "state", "people", "requested_by", "created_at", "suppressed"])


@regulations.command("show")
@twin_of("GET /api/regulations/{regulation_id}")
@click.argument("regulation_id")
@json_option
@api_command
def show(regulation_id: str, as_json: bool, client) -> None:
    """One regulation: who asked and when, and each store's and destination's status."""
    reg = client.get(f"/api/regulations/{regulation_id}")
    if as_json:
        print_json(reg)
        return
    print_table([_summary(reg)],
                ["id", "type", "state", "people", "requested_by", "created_at", "suppressed"])
    steps = [{"where": f"store {name}", **s} for name, s in reg["stores"].items()]
    steps += [{"where": f"destination {d['name']}", **d} for d in reg["destinations"].values()]
    if steps:
        print_table(steps, ["where", "state", "removed", "attempts", "reason"])
