"""Local contract fakes for every destination vendor, as real HTTP servers.

From any test (`tests` is a package, so the repository root is on sys.path):

    from tests.destinations.fakes import start_fake

    fake = start_fake("mixpanel")          # listening on 127.0.0.1:<free port>
    settings = fake.destination_settings() # valid millpond settings pointing at it
    ...
    fake.wait_for(3)                       # records the fake accepted
    fake.stop()

or use the suite-wide `vendor` fixture (`tests/conftest.py`), a factory that
stops every fake it started. Knobs on every fake: `fail_next(n, status,
retry_after=None)`, `delay_seconds`, `outage(on=True, status=503)`; accessors
`received`, `requests`, `duplicates`. Each module's docstring names the
vendors.md section and vendor documentation it follows.
"""

from __future__ import annotations

from typing import Any

from .amplitude import FakeAmplitude
from .base import FakeRequest, FakeResponse, FakeVendor
from .customerio import FakeCustomerIo
from .mixpanel import FakeMixpanel
from .posthog import FakePostHog
from .segment import FakeSegment
from .webhook import FakeWebhook

FAKES: dict[str, type[FakeVendor]] = {
    cls.name: cls
    for cls in (FakeWebhook, FakeSegment, FakeMixpanel, FakeAmplitude, FakePostHog, FakeCustomerIo)
}


def start_fake(name: str, **options: Any) -> FakeVendor:
    """Start the fake for destination type `name` (options go to its constructor).
    The caller stops it with `.stop()` (or uses it as a context manager)."""
    try:
        cls = FAKES[name]
    except KeyError:
        raise KeyError(f"no fake for {name!r}; fakes: {', '.join(sorted(FAKES))}") from None
    return cls(**options).start()


__all__ = [
    "FAKES",
    "FakeAmplitude",
    "FakeCustomerIo",
    "FakeMixpanel",
    "FakePostHog",
    "FakeRequest",
    "FakeResponse",
    "FakeSegment",
    "FakeVendor",
    "FakeWebhook",
    "start_fake",
]
