"""``millpond storage``: the twin of ``/api/storage``."""

from __future__ import annotations

import click

from millpond.cli.common import api_command, connection_options, json_option, twin_of
from millpond.cli.output import print_json, print_table

COLUMNS = ["name", "events", "bytes", "bytes_per_event", "from", "to"]


@click.group()
@connection_options
def storage() -> None:
    """What the log keeps, per tier."""


@storage.command("status")
@twin_of("GET /api/storage")
@json_option
@api_command
def status(as_json: bool, client) -> None:
    """Bytes, events and event-time span of the hot store and the Parquet archive."""
    data = client.get("/api/storage")
    print_json(data) if as_json else print_table(data["tiers"], COLUMNS)
