"""The ``millpond`` command: one module per command group, each the twin of an API area."""

from __future__ import annotations

import click

from millpond.cli.dead_letters import dead_letters
from millpond.cli.destinations import destinations
from millpond.cli.events import events
from millpond.cli.imports import import_group
from millpond.cli.people import people
from millpond.cli.replay import replay
from millpond.cli.segments import segments
from millpond.cli.serve import serve
from millpond.cli.sources import sources


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="millpond")
def cli() -> None:
    """millpond: keep every event, deliver it live, replay any past slice."""


cli.add_command(serve)
cli.add_command(sources)
cli.add_command(events)
cli.add_command(people)
cli.add_command(segments)
cli.add_command(destinations)
cli.add_command(dead_letters)
cli.add_command(replay)
cli.add_command(import_group, "import")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
