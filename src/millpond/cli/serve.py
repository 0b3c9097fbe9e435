"""``millpond serve``: collector, admin API, pumps and console in one process."""

from __future__ import annotations

import click

from millpond.config import DEFAULT_DATA_DIR


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8787, show_default=True, type=click.IntRange(0, 65535))
@click.option("--data", "data_dir", default=DEFAULT_DATA_DIR, show_default=True,
              type=click.Path(file_okay=False), help="Data directory (embedded store).")
@click.option("--sync", "synchronous", default="FULL", show_default=True,
              type=click.Choice(["FULL", "NORMAL"], case_sensitive=False),
              help="SQLite synchronous level: FULL survives power loss, NORMAL only crashes.")
def serve(host: str, port: int, data_dir: str, synchronous: str) -> None:
    """Run the millpond server on the embedded store."""
    from millpond.server import serve as run

    run(host, port, data_dir, synchronous=synchronous.upper())
