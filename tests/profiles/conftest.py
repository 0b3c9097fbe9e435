from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from millpond.storage.sqlite.profiles import SQLiteProfileStore as ProfileStore


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "profiles.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[ProfileStore]:
    ps = ProfileStore(db_path)
    yield ps
    ps.close()
