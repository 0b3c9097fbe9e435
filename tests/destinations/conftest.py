"""Fixtures for destination tests: vendor fakes and an HTTP client.

`fake_vendor("mixpanel", **options)` starts a fake and stops it after the test;
`<name>_fake` fixtures start one fake with default options. Other test
packages can import `tests.destinations.fakes.start_fake` directly, or load
these fixtures with `pytest_plugins = ["tests.destinations.conftest"]` in the
root conftest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from .fakes import FakeVendor, start_fake


@pytest.fixture
def fake_vendor() -> Iterator[Callable[..., FakeVendor]]:
    started: list[FakeVendor] = []

    def factory(name: str, **options: Any) -> FakeVendor:
        fake = start_fake(name, **options)
        started.append(fake)
        return fake

    yield factory
    for fake in started:
        fake.stop()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10.0) as client:
        yield client


def _one(name: str) -> Callable[..., Iterator[FakeVendor]]:
    @pytest.fixture
    def fixture() -> Iterator[FakeVendor]:
        fake = start_fake(name)
        yield fake
        fake.stop()

    fixture.__name__ = f"{name}_fake"
    return fixture


webhook_fake = _one("webhook")
segment_fake = _one("segment")
mixpanel_fake = _one("mixpanel")
amplitude_fake = _one("amplitude")
posthog_fake = _one("posthog")
customerio_fake = _one("customerio")
