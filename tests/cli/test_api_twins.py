"""Every admin-API route has a CLI twin, declared next to the command with ``@twin_of``.

The routes come from the admin app a real server object builds (so a router added to the
server is seen here without editing this file): its OpenAPI document, plus the routes
registered on the app itself, which the document leaves out. The twins come from walking
the ``millpond`` command tree.
"""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
from fastapi import FastAPI
from starlette.routing import Route

from millpond.app import ServerConfig
from millpond.app.asgi import build_admin
from millpond.app.services import build_services
from millpond.cli.common import declared_twins, twin_of
from millpond.cli.main import cli
from millpond.storage import StorageConfig

#: Routes of the admin app that are not admin actions, so need no CLI twin.
NOT_ADMIN_ACTIONS = {
    ("GET", "/"),  # redirects a browser to the web console (/console/)
    ("GET", "/healthz"),  # liveness probe for load balancers and orchestrators
    ("GET", "/metrics"),  # Prometheus scrape endpoint
    ("GET", "/api/openapi.json"),  # the API describing itself
    ("GET", "/api/docs"),  # Swagger UI over that description
}
_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def admin_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every route ``app`` serves; HEAD is GET without a body.

    The OpenAPI document lists the routers' operations; the routes registered on the app
    itself (health, metrics, docs) are read from ``app.routes``. A router route hidden
    from the document (``include_in_schema=False``) would be missed, so admin routers
    keep theirs in it: an admin action is worth documenting anyway.
    """
    found = {(method.upper(), path) for path, item in app.openapi()["paths"].items()
             for method in item if method in _METHODS}
    found |= {(method, route.path) for route in app.routes if isinstance(route, Route)
              for method in route.methods or () if method != "HEAD"}
    return found


@pytest.fixture(scope="module")
def api_routes(tmp_path_factory) -> set[tuple[str, str]]:
    """Every route of the admin app a server on an empty data dir builds."""
    data_dir = tmp_path_factory.mktemp("twins") / "data"
    mp = build_services(ServerConfig(storage=StorageConfig(data_dir=str(data_dir))))
    try:
        return admin_routes(build_admin(mp)[0])
    finally:
        mp.close()


def _commands(group: click.Group, prefix: str = "millpond") -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            yield from _commands(command, path)
        else:
            yield path, command


def cli_twins() -> dict[tuple[str, str], list[str]]:
    """Each declared route, with the commands that declared it."""
    twins: dict[tuple[str, str], list[str]] = {}
    for path, command in _commands(cli):
        for route in declared_twins(command):
            method, _, api_path = route.partition(" ")
            twins.setdefault((method, api_path), []).append(path)
    return twins


def test_every_admin_route_has_a_cli_twin(api_routes) -> None:
    assert api_routes >= NOT_ADMIN_ACTIONS, "an exclusion names a route that no longer exists"
    missing = sorted(api_routes - NOT_ADMIN_ACTIONS - set(cli_twins()))
    assert not missing, (
        "admin-API routes without a CLI twin (declare one with @twin_of on the command): "
        + ", ".join(f"{method} {path}" for method, path in missing))


def test_every_declared_twin_is_a_route(api_routes) -> None:
    stale = {route: commands for route, commands in cli_twins().items()
             if route not in api_routes}
    assert not stale, f"@twin_of names routes the API does not serve: {stale}"


def test_the_imports_routes_have_their_twins() -> None:
    twins = cli_twins()
    assert twins[("GET", "/api/imports")] == ["millpond import list"]
    assert twins[("GET", "/api/imports/{job_id}")] == ["millpond import status"]


def test_twin_of_wants_a_method_and_an_api_path() -> None:
    for bad in ("GET", "/api/sources", "FETCH /api/sources", "GET /healthz", "get /api/x"):
        with pytest.raises(ValueError, match="METHOD /api/"):
            twin_of(bad)
