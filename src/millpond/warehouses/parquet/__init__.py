"""The ``parquet`` storage writer: events as Parquet files in a directory or bucket, once.

Entry points: :class:`ParquetWriter` (``load(events) -> Loaded | Retry | Reject``),
:func:`parse_settings`, :func:`check` (the create-time test), and :func:`read_table` (what a
reader of the manifests sees).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from millpond.warehouses.parquet.settings import (
    ParquetSettings,
    check,
    mask_settings,
    parse_settings,
)

if TYPE_CHECKING:
    from millpond.warehouses.parquet.writer import ParquetWriter, read_table


def __getattr__(name: str) -> Any:
    """The writer's names on first use: the destination catalog imports this package for
    the settings in every process (server, preview workers), and the writer brings
    pyarrow, which only a process that writes or reads Parquet files needs."""
    if name in ("ParquetWriter", "read_table"):
        from millpond.warehouses.parquet import writer

        return getattr(writer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "ParquetSettings",
    "ParquetWriter",
    "check",
    "mask_settings",
    "parse_settings",
    "read_table",
]
