"""Fixtures shared by the whole suite: real servers, an admin client and vendor fakes.

Servers are real ``millpond serve`` subprocesses (:class:`tests.support.server.ServerProcess`):
``server`` gives a test its own, ``server_factory`` several (or one with other options),
and ``shared_server`` one for every test of a module, when starting one per test would cost
more than the tests. Plain helpers to import are in :mod:`tests.support`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from millpond.devcluster import DevCluster
from tests.destinations.fakes import FakeVendor, start_fake
from tests.support.server import ADMIN_TOKEN, ServerProcess

# Re-exported for test modules on other branches that still import them from here; new
# code imports tests.support.server.
__all__ = ["ADMIN_TOKEN", "ServerProcess"]

#: Modules that take a minute or more, mostly waiting (a two-minute outage, a gigabyte
#: import, fuzzing a live server, the README walk-through). In ``make test``'s parallel run
#: (``--dist loadfile``: a module at a time per worker, in collection order) they start
#: first, so no worker is still in one of them when the other has run out of work.
START_FIRST = (
    "tests/connections/test_delivery_e2e.py",
    "tests/test_readme.py",
    "tests/backfill/test_large_file.py",
    "tests/collector/test_fuzz.py",
    "tests/api/test_destinations_api.py",
    "tests/delivery/test_inflight_e2e.py",
    "tests/api/test_schemathesis.py",
)


def pytest_collection_modifyitems(config, items) -> None:
    """Under pytest-xdist only, move :data:`START_FIRST` ahead (a stable sort: the order
    within and between the other modules stays as collected, and every worker sorts the
    same way, as xdist requires)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    rank = {path: i for i, path in enumerate(START_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.partition("::")[0], len(rank)))


@pytest.fixture
def server_factory(tmp_path) -> Iterator[Callable[..., ServerProcess]]:
    """Start servers on demand (``server_factory(name, args=[...], **env)``); all are stopped
    at teardown. ``args`` are more ``millpond serve`` options, ``env`` more variables."""
    started: list[ServerProcess] = []

    def make(name: str = "srv", args: list[str] | None = None, **env: str) -> ServerProcess:
        proc = ServerProcess(tmp_path / name, extra_env=env, args=list(args or ()))
        proc.data_dir.mkdir(parents=True, exist_ok=True)
        started.append(proc)
        return proc.start()

    yield make
    for proc in started:
        proc.stop()


@pytest.fixture
def server(server_factory) -> ServerProcess:
    """A fresh server of this test's own: empty, default options."""
    return server_factory()


@pytest.fixture(scope="module")
def shared_server(request, tmp_path_factory) -> Iterator[ServerProcess]:
    """One server for every test of a module. Tests sharing it must not expect it empty:
    each makes sources and destinations of its own, under names no other test uses."""
    name = request.module.__name__.rpartition(".")[2]
    proc = ServerProcess(tmp_path_factory.mktemp(name) / "data")
    proc.data_dir.mkdir(parents=True)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def admin(server) -> Iterator[httpx.Client]:
    """An admin-API client (``Authorization: Bearer``) for this test's ``server``."""
    with server.admin as client:
        yield client


@pytest.fixture
def vendor() -> Iterator[Callable[..., FakeVendor]]:
    """``vendor("mixpanel", **options)`` starts a vendor fake (a real HTTP server on
    loopback, see :mod:`tests.destinations.fakes`); every one started is stopped after
    the test."""
    started: list[FakeVendor] = []

    def factory(name: str, **options: Any) -> FakeVendor:
        fake = start_fake(name, **options)
        started.append(fake)
        return fake

    yield factory
    for fake in started:
        fake.stop()


@pytest.fixture(scope="session")
def dev_cluster() -> Iterator[DevCluster]:
    """The local cluster ``millpond dev-cluster`` starts (3 NATS JetStream nodes, PostgreSQL,
    S3), once per test session: a few seconds to start, so every test that needs the
    engines shares it and makes its own stream, database or bucket under a unique name."""
    with DevCluster() as cluster:
        yield cluster
