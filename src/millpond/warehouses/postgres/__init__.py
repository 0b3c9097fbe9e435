"""The ``postgres`` warehouse loader: Segment's warehouse schema in PostgreSQL, exactly once.

Entry points: :class:`PostgresLoader` (``load(events) -> Loaded | Retry | Reject``),
:func:`parse_settings` and :func:`check` (the connection test run when a destination is created).
"""

from millpond.warehouses.postgres.loader import PostgresLoader
from millpond.warehouses.postgres.settings import (
    PostgresSettings,
    check,
    mask_settings,
    parse_settings,
)

__all__ = ["PostgresLoader", "PostgresSettings", "check", "mask_settings", "parse_settings"]
