"""The registry: lookup by name, helpful errors, registration checks."""

from __future__ import annotations

import msgspec
import pytest

from millpond.destinations import (
    BatchLimits,
    DestinationType,
    RateLimit,
    UnknownDestinationType,
    get_type,
    register,
)
from millpond.destinations.mixpanel import Mixpanel


def test_get_type_and_unknown_lists_names() -> None:
    assert get_type("mixpanel") is Mixpanel
    with pytest.raises(UnknownDestinationType) as err:
        get_type("mixpanl")
    message = str(err.value)
    assert "`mixpanl`" in message
    for name in ("amplitude", "customerio", "mixpanel", "posthog", "segment", "webhook"):
        assert name in message
    assert isinstance(err.value, LookupError)


class _Settings(msgspec.Struct, forbid_unknown_fields=True):
    token: str


def _make(name: str, **overrides: object) -> type[DestinationType]:
    attrs = {
        "name": name,
        "title": "Test",
        "docs": "https://example.com",
        "settings_type": _Settings,
        "settings_example": {"token": "t"},
        "default_rate_limit": RateLimit(1.0),
        "batching": BatchLimits(1, 1000, 0.0),
        "build_request": lambda self, action, items: None,
        **overrides,
    }
    return type(f"T_{name}", (DestinationType,), attrs)


def test_register_rejects_a_taken_name() -> None:
    with pytest.raises(TypeError, match="already registered"):
        register(_make("mixpanel"))


def test_register_requires_capabilities_and_strict_settings() -> None:
    incomplete = _make("incomplete")
    del incomplete.batching
    with pytest.raises(TypeError, match="batching"):
        register(incomplete)

    class Loose(msgspec.Struct):
        token: str

    with pytest.raises(TypeError, match="forbid_unknown_fields"):
        register(_make("loose", settings_type=Loose))
    with pytest.raises(TypeError, match="secret_fields"):
        register(_make("badsecret", secret_fields=frozenset({"nope"})))


def test_instance_needs_parsed_settings() -> None:
    from millpond.destinations import SettingsError

    with pytest.raises(SettingsError):
        Mixpanel({"project_token": "x"})  # type: ignore[arg-type]
