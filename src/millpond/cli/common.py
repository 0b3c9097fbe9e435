"""Options, error handling and API-twin declarations every CLI command group shares."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import click

from millpond.cli.client import DEFAULT_URL, AdminClient, ApiError
from millpond.cli.output import FIELD_META, fail
from millpond.config import DEFAULT_DATA_DIR, TOKEN_FILE

#: Where the connection options given at any level (root, group, command) are kept.
CONNECTION_META = "millpond.connection"
MISSING_TOKEN = ("no admin token: pass --token TOKEN, set MILLPOND_ADMIN_TOKEN, or run it "
                 "where the server's data dir is (--data DIR, default ./.millpond) so its "
                 "admin_token file is read")
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def json_argument(option: str, text: str, example: str) -> Any:
    """The JSON an option was given: as text, ``@FILE`` (read from the file) or ``@-``
    (read from standard input), as curl's ``-d`` takes them; one line on bad input,
    with ``example`` (JSON text).

    Why one helper: every option that takes JSON (a segment's definition, an event to
    test, settings) reads it the same way, and a file name given where JSON was expected
    (``--event event.json``) gets an error that says how to pass a file, not a parser's
    "Expecting value"."""
    if text == "@-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            fail(f"{option}: cannot read {text[1:]!r}: {exc.strerror}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"{option} is not JSON ({exc.msg} at character {exc.pos}): give the JSON, or "
             f"@FILE to read it from a file (@- from standard input), e.g. '{example}'")


def connection_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--url``, ``--token`` and ``--data`` to a command or group.

    Why at every level: ``millpond --token T sources list``, ``millpond sources --token T
    list`` and ``millpond sources list --token T`` all work, the same for every command
    group, so nobody has to remember where one group wants it. The innermost given value
    wins; the environment (``MILLPOND_URL``, ``MILLPOND_ADMIN_TOKEN``) and the server's
    token file are read only when no level gave one (:func:`admin_client`)."""

    @click.option("--data", "data_dir", default=None, metavar="DIR",
                  help="The local server's data dir, whose admin_token file gives the token "
                       "when neither --token nor MILLPOND_ADMIN_TOKEN does (default "
                       "./.millpond).")
    @click.option("--token", default=None,
                  help="Admin token (else env MILLPOND_ADMIN_TOKEN, else the local data "
                       "dir's admin_token file).")
    @click.option("--url", default=None,
                  help="Server URL (env MILLPOND_URL; default http://127.0.0.1:8787).")
    @functools.wraps(func)
    def wrapper(*args: Any, url: str | None, token: str | None, data_dir: str | None,
                **kwargs: Any) -> Any:
        given = click.get_current_context().meta.setdefault(CONNECTION_META, {})
        for key, value in (("url", url), ("token", token), ("data_dir", data_dir)):
            if value is not None:
                given[key] = value
        return func(*args, **kwargs)

    return wrapper


def _token_file(data_dir: str | None, url: str) -> str | None:
    """The admin token a server on this machine keeps in its data dir, if readable."""
    if urlsplit(url).hostname not in _LOCAL_HOSTS and data_dir is None:
        return None
    path = Path(data_dir or DEFAULT_DATA_DIR) / TOKEN_FILE
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def admin_client() -> AdminClient:
    """The client for this command: URL and token from the options given at any level,
    else the environment, else (the token) the local data dir's file; one error line
    naming all three ways when there is no token."""
    given = click.get_current_context().meta.get(CONNECTION_META, {})
    url = given.get("url") or os.environ.get("MILLPOND_URL") or DEFAULT_URL
    token = given.get("token") or os.environ.get("MILLPOND_ADMIN_TOKEN") \
        or _token_file(given.get("data_dir"), url)
    if not token:
        fail(MISSING_TOKEN)
    return AdminClient(url, token)


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
    """Add the connection options, pass an AdminClient as ``client``, and turn ApiError
    into a one-liner."""

    @connection_options
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        client = admin_client()
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
