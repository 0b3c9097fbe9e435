from __future__ import annotations

from collections.abc import Iterator

import pytest

from .helpers import Served


@pytest.fixture
def served(tmp_path) -> Iterator:
    """``served(*args, name="srv", **env)`` starts ``millpond serve``; all stopped after."""
    started: list[Served] = []

    def make(*args: str, name: str = "srv", port: int | None = None, **extra_env: str):
        proc = Served(tmp_path / name, *args, port=port, extra_env=extra_env)
        started.append(proc)
        return proc.start()

    yield make
    for proc in started:
        proc.stop()
