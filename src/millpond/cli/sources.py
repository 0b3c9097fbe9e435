"""``millpond sources``: the twin of ``/api/sources``."""

from __future__ import annotations

import click

from millpond.cli.common import api_command, connection_options, json_option, twin_of
from millpond.cli.output import console, print_json, print_table

COLUMNS = ["id", "name", "kind", "replayable", "write_key"]


@click.group()
@connection_options
def sources() -> None:
    """Create and manage sources (where data comes in)."""


@sources.command("add")
@twin_of("POST /api/sources")
@click.argument("name")
@click.option("--kind", type=click.Choice(["pipelines", "track", "import"]), default="pipelines",
              show_default=True)
@click.option("--replayable/--not-replayable", default=None,
              help="Default: yes for pipelines and import, no for track.")
@click.option("--allowed-origin", "origins", multiple=True, metavar="ORIGIN",
              help="A web origin browsers may send from, e.g. https://www.example.com "
                   "(repeatable; default: any origin).")
@click.option("--retention", default="forever", show_default=True,
              help='How long events are kept after they arrive: "forever" or a duration '
                   'such as 400d, 26w (at least 1h).')
@json_option
@api_command
def add(name: str, kind: str, replayable: bool | None, origins: tuple[str, ...],
        retention: str, as_json: bool, client) -> None:
    """Create a source and print its write key."""
    source = client.post("/api/sources", {"name": name, "kind": kind, "replayable": replayable,
                                          "allowed_origins": list(origins) or None,
                                          "retention": retention})
    if as_json:
        print_json(source)
        return
    console.print(f"created source {source['name']} ({source['id']}, {kind})")
    console.print(f"write key: {source['write_key']}", highlight=False)
    if source.get("site_id"):
        console.print(f"site id:   {source['site_id']}  (Track API: Basic site_id:write_key)",
                      highlight=False)


@sources.command("list")
@twin_of("GET /api/sources")
@json_option
@api_command
def list_(as_json: bool, client) -> None:
    """List sources."""
    data = client.get("/api/sources")["sources"]
    print_json(data) if as_json else print_table(data, COLUMNS)


@sources.command("show")
@twin_of("GET /api/sources/{ref}")
@click.argument("ref")
@json_option
@api_command
def show(ref: str, as_json: bool, client) -> None:
    """Show one source (by id or name)."""
    data = client.get(f"/api/sources/{ref}")
    print_json(data) if as_json else print_table([data], COLUMNS + ["site_id", "retention"])


@sources.command("update")
@twin_of("PATCH /api/sources/{ref}")
@click.argument("ref")
@click.option("--name", default=None, help="A new name.")
@click.option("--replayable/--not-replayable", default=None)
@click.option("--enable/--disable", "enabled", default=None,
              help="A disabled source's write key is refused.")
@click.option("--allowed-origin", "origins", multiple=True, metavar="ORIGIN",
              help="Replace the allowed web origins (repeatable).")
@click.option("--any-origin", is_flag=True, help="Accept browser requests from any origin.")
@click.option("--retention", default=None,
              help='How long events are kept after they arrive: "forever" or a duration '
                   'such as 400d (expired events are deleted).')
@json_option
@api_command
def update(ref: str, name: str | None, replayable: bool | None, enabled: bool | None,
           origins: tuple[str, ...], any_origin: bool, retention: str | None, as_json: bool,
           client) -> None:
    """Change a source's name, replayability, allowed origins, enabled state or
    retention."""
    if origins and any_origin:
        raise click.UsageError("give --allowed-origin or --any-origin, not both")
    body: dict = {k: v for k, v in (("name", name), ("replayable", replayable),
                                    ("enabled", enabled), ("retention", retention))
                  if v is not None}
    if origins or any_origin:
        body["allowed_origins"] = list(origins) if origins else None
    if not body:
        raise click.UsageError("nothing to change: give an option to change")
    data = client.patch(f"/api/sources/{ref}", body)
    print_json(data) if as_json else print_table([data], COLUMNS + ["allowed_origins",
                                                                    "enabled", "retention"])


@sources.command("snippet")
@twin_of("GET /api/sources/{ref}/snippet")
@click.argument("ref")
@click.option("--sdk", type=click.Choice(["segment", "customerio", "rudderstack"]),
              required=True, help="The browser SDK the page uses.")
@click.option("--npm", "npm", is_flag=True, help="Code for a page built with a bundler.")
@json_option
@api_command
def snippet(ref: str, sdk: str, npm: bool, as_json: bool, client) -> None:
    """Print the code to paste into a web page so it sends this source's events here."""
    data = client.get(f"/api/sources/{ref}/snippet",
                      {"sdk": sdk, "form": "npm" if npm else "snippet"})
    if as_json:
        print_json(data)
    else:
        click.echo(data["text"], nl=False)


@sources.command("rotate-key")
@twin_of("POST /api/sources/{ref}/rotate-key")
@click.argument("ref")
@json_option
@api_command
def rotate_key(ref: str, as_json: bool, client) -> None:
    """Issue a new write key; the old one stops working at once."""
    data = client.post(f"/api/sources/{ref}/rotate-key")
    print_json(data) if as_json else console.print(f"new write key: {data['write_key']}",
                                                   highlight=False)


@sources.command("delete")
@twin_of("DELETE /api/sources/{ref}")
@click.argument("ref")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@api_command
def delete(ref: str, yes: bool, client) -> None:
    """Delete a source (its stored events stay in the log)."""
    if not yes:
        click.confirm(f"delete source {ref}?", abort=True)
    data = client.delete(f"/api/sources/{ref}")["deleted"]
    console.print(f"deleted source {data['name']} ({data['id']})")
