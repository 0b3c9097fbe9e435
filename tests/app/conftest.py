"""Fixtures of the server tests on the local cluster."""

import pytest

from tests.support.cluster import drop_place, new_place


@pytest.fixture
def place(dev_cluster):
    """A place of its own on the session's cluster (stream and schema), dropped after."""
    name = new_place()
    yield name
    drop_place(dev_cluster, name)
