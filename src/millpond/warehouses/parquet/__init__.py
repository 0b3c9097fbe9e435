"""The ``parquet`` storage writer: events as Parquet files in a directory or bucket, once.

Entry points: :class:`ParquetWriter` (``load(events) -> Loaded | Retry | Reject``),
:func:`parse_settings`, :func:`check` (the create-time test), and :func:`read_table` (what a
reader of the manifests sees).
"""

from millpond.warehouses.parquet.settings import (
    ParquetSettings,
    check,
    mask_settings,
    parse_settings,
)
from millpond.warehouses.parquet.writer import ParquetWriter, read_table

__all__ = [
    "ParquetSettings",
    "ParquetWriter",
    "check",
    "mask_settings",
    "parse_settings",
    "read_table",
]
