"""The ``millpond`` command: one module per command group, each the twin of an API area."""

from __future__ import annotations

import sys

import click

from millpond.cli.cluster import cluster
from millpond.cli.common import connection_options
from millpond.cli.dead_letters import dead_letters
from millpond.cli.destination_outcomes import outcomes
from millpond.cli.destination_retrying import retrying
from millpond.cli.destinations import destinations
from millpond.cli.devcluster import dev_cluster
from millpond.cli.events import events
from millpond.cli.imports import import_group
from millpond.cli.people import people
from millpond.cli.regulations import regulations
from millpond.cli.replay import replay
from millpond.cli.segments import segments
from millpond.cli.serve import serve
from millpond.cli.sources import sources
from millpond.cli.storage import storage


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="millpond")
@connection_options
def cli() -> None:
    """millpond: keep every event, deliver it live, replay any past slice."""


cli.add_command(serve)
cli.add_command(sources)
cli.add_command(events)
cli.add_command(people)
cli.add_command(segments)
cli.add_command(regulations)
cli.add_command(destinations)
destinations.add_command(outcomes)
destinations.add_command(retrying)
cli.add_command(dead_letters)
cli.add_command(replay)
cli.add_command(import_group, "import")
cli.add_command(dev_cluster)
cli.add_command(storage)
cli.add_command(cluster)


#: The exit status of a command stopped with Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130


def main() -> None:
    """Run the command; Ctrl-C anywhere ends it with status 130 and no traceback.

    Why not click's own handling: it turns Ctrl-C into "Aborted!" with status 1, which a
    script cannot tell from a failed command."""
    try:
        cli.main(standalone_mode=False, prog_name="millpond")
    except click.exceptions.Abort as exc:
        if isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):
            sys.exit(INTERRUPTED)
        click.echo("Aborted!", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(INTERRUPTED)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:  # status 2, as click says; one line, as every error
        where = exc.ctx.command_path if exc.ctx is not None else "millpond"
        message = exc.format_message()
        click.echo(f"error: {message[:1].lower()}{message[1:].rstrip('.')}"
                   f" (see {where} --help)", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except BrokenPipeError:  # `millpond ... | head`: the reader is gone, nothing to say
        sys.exit(1)


if __name__ == "__main__":
    main()
