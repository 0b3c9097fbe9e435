"""The destination catalog: types register themselves where they are defined.

`@register` on a class in `millpond/destinations/<name>.py` is the only step to
add a type; `millpond.destinations` imports every built-in module so that
importing the package fills the registry.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from millpond.destinations.base import DestinationType
from millpond.destinations.errors import UnknownDestinationType

T = TypeVar("T", bound=type[DestinationType])

_TYPES: dict[str, type[DestinationType]] = {}

_REQUIRED = (
    "name",
    "title",
    "docs",
    "settings_type",
    "settings_example",
    "default_rate_limit",
    "batching",
)


def register(cls: T) -> T:
    """Class decorator adding a destination type to the catalog under `cls.name`.

    Fails at import time (a programming error, not a user error) if a declared
    capability is missing or the name is taken by another class.
    """
    missing = [attr for attr in _REQUIRED if not hasattr(cls, attr)]
    if missing:
        raise TypeError(f"{cls.__name__} must declare {', '.join(missing)}")
    settings_config = cls.settings_type.__struct_config__
    if not settings_config.forbid_unknown_fields:
        raise TypeError(f"{cls.__name__}.settings_type must set forbid_unknown_fields=True")
    unknown_secrets = cls.secret_fields - set(cls.settings_type.__struct_fields__)
    if unknown_secrets:
        raise TypeError(f"{cls.__name__}.secret_fields names no setting: {sorted(unknown_secrets)}")
    existing = _TYPES.get(cls.name)
    if existing is not None and existing is not cls:
        raise TypeError(f"destination type `{cls.name}` is already registered by {existing}")
    _TYPES[cls.name] = cls
    return cls


def get_type(name: str) -> type[DestinationType]:
    """The type registered as `name`; raises UnknownDestinationType listing known names."""
    try:
        return _TYPES[name]
    except (KeyError, TypeError):
        raise UnknownDestinationType(str(name), sorted(_TYPES)) from None


def all_types() -> list[type[DestinationType]]:
    """Every registered type, in registration order."""
    return list(_TYPES.values())


def describe(cls: type[DestinationType]) -> dict[str, Any]:
    """One catalog entry: capabilities, settings JSON Schema and presets, as JSON data."""
    return {
        "name": cls.name,
        "title": cls.title,
        "docs": cls.docs,
        "kind": cls.kind,
        "replayable": cls.replayable,
        "default_rate_limit": msgspec.to_builtins(cls.default_rate_limit),
        "batching": msgspec.to_builtins(cls.batching),
        "dedupe_key": cls.dedupe_key,
        "secret_fields": sorted(cls.secret_fields),
        "settings_schema": msgspec.json.schema(cls.settings_type),
        "settings_example": cls.settings_example,
        # Through JSON so tuples (ActionSpec.fields) come back as plain lists.
        "presets": msgspec.json.decode(msgspec.json.encode(cls.presets)),
    }


def catalog() -> list[dict[str, Any]]:
    """All registered types described for the admin API, CLI and console."""
    return [describe(cls) for cls in all_types()]
