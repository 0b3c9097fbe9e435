"""Fixtures for destination tests: an HTTP client to talk to vendor fakes directly.

The fakes themselves come from the suite-wide ``vendor`` fixture (``tests/conftest.py``):
``vendor("mixpanel", **options)`` starts one and stops it after the test.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10.0) as client:
        yield client
