"""The ``millpond`` command: one module per command group, each the twin of an API area."""

from __future__ import annotations

import contextlib
import importlib

import click

from millpond.cli.dead_letters import dead_letters
from millpond.cli.destinations import destinations
from millpond.cli.events import events
from millpond.cli.people import people
from millpond.cli.serve import serve
from millpond.cli.sources import sources

# Command groups written in their own modules; each is optional until its layer lands.
_OPTIONAL_GROUPS = {
    "import": ("millpond.cli.imports", "import_group"),
}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="millpond")
def cli() -> None:
    """millpond: keep every event, deliver it live, replay any past slice."""


cli.add_command(serve)
cli.add_command(sources)
cli.add_command(events)
cli.add_command(people)
cli.add_command(destinations)
cli.add_command(dead_letters)
for _name, (_module, _attr) in _OPTIONAL_GROUPS.items():
    with contextlib.suppress(ImportError):
        cli.add_command(getattr(importlib.import_module(_module), _attr), _name)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
