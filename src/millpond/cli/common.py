"""Options and error handling every CLI command group shares."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from millpond.cli.client import AdminClient, ApiError
from millpond.cli.output import FIELD_META, fail

url_option = click.option("--url", envvar="MILLPOND_URL", default=None,
                          help="Server URL (env MILLPOND_URL; default http://127.0.0.1:8787).")
token_option = click.option("--token", envvar="MILLPOND_ADMIN_TOKEN", default=None,
                            help="Admin token (env MILLPOND_ADMIN_TOKEN).")


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--json`` and ``--field PATH`` (one value of that JSON, for ``$(...)``).

    ``--field`` lives here, next to ``--json``, so every command that can print JSON can
    also hand one value to a shell script without jq (which many machines lack); the
    command itself only sees ``as_json=True`` and :func:`~millpond.cli.output.print_json`
    prints the chosen field instead of the whole answer.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, as_json: bool, field: str | None, **kwargs: Any) -> Any:
        if field is not None:
            click.get_current_context().meta[FIELD_META] = field
            as_json = True
        return func(*args, as_json=as_json, **kwargs)

    wrapper = click.option(
        "--field", metavar="PATH", default=None,
        help="Print only this field of the --json answer, e.g. write_key or progress.sent "
             "(a list gives one line per item: events.messageId).")(wrapper)
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(wrapper)


def api_command(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add --url/--token, pass an AdminClient as ``client``, and turn ApiError into a one-liner."""

    @url_option
    @token_option
    @functools.wraps(func)
    def wrapper(*args: Any, url: str | None, token: str | None, **kwargs: Any) -> Any:
        client = AdminClient(url, token)
        try:
            return func(*args, client=client, **kwargs)
        except ApiError as exc:
            fail(str(exc))
        finally:
            client.close()

    return wrapper
