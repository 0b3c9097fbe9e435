"""Options and error handling every CLI command group shares."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from millpond.cli.client import AdminClient, ApiError
from millpond.cli.output import fail

url_option = click.option("--url", envvar="MILLPOND_URL", default=None,
                          help="Server URL (env MILLPOND_URL; default http://127.0.0.1:8787).")
token_option = click.option("--token", envvar="MILLPOND_ADMIN_TOKEN", default=None,
                            help="Admin token (env MILLPOND_ADMIN_TOKEN).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


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
