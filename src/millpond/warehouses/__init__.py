"""Warehouse and storage loaders: stored events into PostgreSQL tables or Parquet files, once.

A loader takes a batch of stored events (:class:`~millpond.warehouses.batch.StoredEvent`) and
answers :class:`~millpond.warehouses.batch.Loaded` (with rows per table and every discard),
``Retry`` (transient; nothing applied) or ``Reject`` (terminal; nothing applied, the reason names
what to fix). Loaders never retry: the delivery runs own retries, dead letters and pacing.

- :mod:`.schema`, :mod:`.naming`, :mod:`.flatten`, :mod:`.types`: Segment's warehouse schema,
  names, flattening and column types, without I/O;
- :mod:`.postgres`: :class:`~millpond.warehouses.postgres.PostgresLoader`;
- :mod:`.parquet`: :class:`~millpond.warehouses.parquet.ParquetWriter`.
"""

# The destination catalog first: it registers the loader types, which import this package.
import millpond.destinations  # noqa: F401
from millpond.warehouses.batch import Discard, Loaded, LoadOutcome, StoredEvent, from_log_rows

__all__ = ["Discard", "LoadOutcome", "Loaded", "StoredEvent", "from_log_rows"]
