"""Fixtures for the SDK tests: one real server shared by a module's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import ServerProcess


@pytest.fixture(scope="module")
def sdk_server(tmp_path_factory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("sdk") / "data")
    proc.data_dir.mkdir(parents=True)
    proc.start()
    yield proc
    proc.stop()
