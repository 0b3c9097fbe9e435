"""``millpond cluster``: the twin of ``/api/cluster``."""

from __future__ import annotations

import click

from millpond.cli.common import api_command, connection_options, json_option, twin_of
from millpond.cli.output import print_json, print_table


@click.group()
@connection_options
def cluster() -> None:
    """The processes of a scale-out millpond (serve --log nats://… --state postgresql://…)."""


@cluster.command("status")
@twin_of("GET /api/cluster")
@json_option
@api_command
def status(as_json: bool, client) -> None:
    """Processes (role, last heartbeat), lease owners, the stream and each destination's
    lag."""
    data = client.get("/api/cluster")
    if as_json:
        print_json(data)
        return
    if not data["clustered"]:
        click.echo("not a cluster: this server runs on the embedded store")
        return
    stream = data["stream"]
    click.echo(f"place {data['place']}: stream {stream['name']}, {stream['messages']:,} "
               f"messages, {stream['bytes']:,} bytes, {stream['replicas']} replicas, "
               f"leader {stream['leader']}")
    for peer in stream["followers"]:
        click.echo(f"  follower {peer['name']}: "
                   f"{'current' if peer['current'] else 'catching up'}"
                   f"{', offline' if peer['offline'] else ''}, lag {peer['lag']}")
    click.echo("\nprocesses")
    print_table([{**p, "heartbeat_age": f"{p['heartbeat_age']:.1f} s"}
                 for p in data["processes"]], ["id", "role", "url", "heartbeat_age"])
    click.echo("\nleases")
    print_table([{**lease, "expires_in": f"{lease['expires_in']:.1f} s"}
                 for lease in data["leases"]], ["name", "owner", "expires_in"])
    click.echo("\ndestinations")
    print_table(data["destinations"], ["name", "owner", "cursor", "events_behind",
                                       "lag_seconds"])
