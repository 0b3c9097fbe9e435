"""``millpond serve``: collector, admin API, pumps and console in one process."""

from __future__ import annotations

import click

from millpond.config import DEFAULT_DATA_DIR
from millpond.logs import FORMATS, LEVELS


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8787, show_default=True, type=click.IntRange(0, 65535),
              envvar="MILLPOND_PORT", help="Port to listen on (env MILLPOND_PORT).")
@click.option("--data", "data_dir", default=DEFAULT_DATA_DIR, show_default=True,
              type=click.Path(file_okay=False), help="Data directory (embedded store).")
@click.option("--sync", "synchronous", default="FULL", show_default=True,
              type=click.Choice(["FULL", "NORMAL"], case_sensitive=False),
              help="SQLite synchronous level: FULL survives power loss, NORMAL only crashes.")
@click.option("--public-url", default=None, metavar="URL",
              help="How browsers and apps reach this server, e.g. https://events.example.com "
                   "(SDK settings and snippets name it; default: the request's Host).")
@click.option("--trust-proxy", is_flag=True,
              help="Take the public host and scheme from X-Forwarded-Host/-Proto (only "
                   "behind a proxy that sets them).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(LEVELS, case_sensitive=False),
              help="Least severe log records written to stderr.")
@click.option("--log-format", default="text", show_default=True,
              type=click.Choice(FORMATS, case_sensitive=False),
              help="text: one line per record for people; json: one JSON object per line.")
@click.option("--access-log/--no-access-log", default=False, show_default=True,
              help="Also log one line per HTTP request (in the same format).")
def serve(host: str, port: int, data_dir: str, synchronous: str, public_url: str | None,
          trust_proxy: bool, log_level: str, log_format: str, access_log: bool) -> None:
    """Run the millpond server on the embedded store.

    Logs go to stderr; stdout has only the generated admin token (first start) and the
    "millpond serving on URL" line, printed once the server answers requests.
    """
    from millpond import logs
    from millpond.cli.output import fail
    from millpond.collector.public_url import BadPublicURL, PublicAddress
    from millpond.server import StartupError
    from millpond.server import serve as run

    try:
        public = PublicAddress.from_options(public_url, trust_proxy)
    except BadPublicURL as exc:
        raise click.BadParameter(str(exc), param_hint="--public-url") from None
    logs.setup(log_level.lower(), log_format.lower(), access_log=access_log)
    try:
        run(host, port, data_dir, synchronous=synchronous.upper(), access_log=access_log,
            public=public)
    except StartupError as exc:
        fail(str(exc))
