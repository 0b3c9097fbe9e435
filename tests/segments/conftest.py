"""Fixtures shared by the segment tests."""

import pytest

from millpond.storage import StorageConfig, open_storage


@pytest.fixture(params=["memory", "sqlite"])
def storage(request, tmp_path):
    """A store of each embedded backend the engine runs on."""
    storage = open_storage(StorageConfig(backend=request.param, data_dir=str(tmp_path / "d")))
    yield storage
    storage.close()
