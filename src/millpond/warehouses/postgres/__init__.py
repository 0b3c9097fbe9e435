"""The ``postgres`` warehouse loader: Segment's warehouse schema in PostgreSQL, exactly once.

Entry points: :class:`PostgresLoader` (``load(events) -> Loaded | Retry | Reject``),
:func:`parse_settings` and :func:`check` (the connection test run when a destination is created).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from millpond.warehouses.postgres.settings import (
    PostgresSettings,
    check,
    mask_settings,
    parse_settings,
)

if TYPE_CHECKING:
    from millpond.warehouses.postgres.loader import PostgresLoader


def __getattr__(name: str) -> Any:
    """``PostgresLoader`` on first use: the catalog imports this package for the settings,
    and the loader brings psycopg (see ``settings``'s docstring)."""
    if name == "PostgresLoader":
        from millpond.warehouses.postgres.loader import PostgresLoader

        return PostgresLoader
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["PostgresLoader", "PostgresSettings", "check", "mask_settings", "parse_settings"]
