"""Options, error handling and API-twin declarations every CLI command group shares."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

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


_T = TypeVar("_T")
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
#: Where :func:`twin_of` keeps a command's routes (on its callback).
TWINS_ATTRIBUTE = "__millpond_api_twins__"


def twin_of(*routes: str) -> Callable[[_T], _T]:
    """Declare the admin-API routes this command is the CLI twin of.

    Each route is ``"METHOD /path"`` with the path exactly as the API declares it, e.g.
    ``@twin_of("GET /api/sources/{ref}")``; put it right under ``@group.command(...)``.
    Why: the API is the product and the CLI its twin, so every admin action can be
    scripted either way. ``tests/cli/test_api_twins.py`` fails for a route that no command
    declares and for a declaration that no route matches, so the two cannot drift apart.
    """
    for route in routes:
        method, _, path = route.partition(" ")
        if method not in _METHODS or not path.startswith("/api/"):
            raise ValueError(f"twin_of wants 'METHOD /api/...', e.g. 'GET /api/sources'; "
                             f"got {route!r}")

    def declare(target: _T) -> _T:
        setattr(target, TWINS_ATTRIBUTE, (*getattr(target, TWINS_ATTRIBUTE, ()), *routes))
        return target

    return declare


def declared_twins(command: click.Command) -> tuple[str, ...]:
    """The routes ``command`` declared with :func:`twin_of` (none for a group)."""
    return tuple(getattr(command, TWINS_ATTRIBUTE, ())) + tuple(
        getattr(command.callback, TWINS_ATTRIBUTE, ()))
