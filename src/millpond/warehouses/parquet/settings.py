"""Settings of a ``parquet`` storage destination: a local directory or an S3-compatible bucket.

``path`` is either an absolute directory (``/var/lib/millpond/lake``) or ``s3://bucket/prefix``;
the S3 fields only apply to the latter (``endpoint_url`` for MinIO, R2, moto...; credentials may
be left out to use the machine's usual AWS credential chain). Validation follows
:mod:`millpond.destinations.settings` and raises only :class:`SettingsError`.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta

import millpond.destinations.settings as _settings
from millpond.destinations.errors import SettingsError
from millpond.warehouses.parquet.stores import LocalStore, ObjectStore, S3Store

__all__ = [
    "ParquetSettings",
    "SECRET_FIELDS",
    "check",
    "make_store",
    "mask_settings",
    "parse_settings",
]

TYPE_NAME = "parquet"
SECRET_FIELDS = frozenset({"secret_access_key"})
SETTINGS_EXAMPLE = {
    "path": "s3://analytics-lake/millpond",
    "endpoint_url": "https://s3.eu-west-1.amazonaws.com",
    "access_key_id": "AKIAEXAMPLE",
    "secret_access_key": "example-secret",
    "region": "eu-west-1",
}
MIN_BATCH_INTERVAL = 5.0


class ParquetSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    path: Annotated[str, Meta(description="An absolute directory, or s3://bucket/prefix.")]
    endpoint_url: Annotated[
        str | None, Meta(description="S3-compatible endpoint (MinIO, R2...); AWS if unset.")
    ] = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    region: str | None = None
    batch_interval_seconds: Annotated[
        float, Meta(description="How often a micro-batch is written (at least 5 seconds).")
    ] = 60.0
    row_group_size: Annotated[
        int, Meta(description="Rows per Parquet row group (each has min/max statistics).")
    ] = 100_000
    compression_level: Annotated[
        int | None, Meta(description="zstd level (1-22); pyarrow's default when unset.")
    ] = None

    @property
    def is_s3(self) -> bool:
        return self.path.startswith("s3://")


def parse_settings(raw: dict) -> ParquetSettings:
    parsed = _settings.convert(TYPE_NAME, ParquetSettings, raw, SETTINGS_EXAMPLE)
    assert isinstance(parsed, ParquetSettings)
    check_settings(parsed)
    return parsed


def check_settings(s: ParquetSettings) -> None:
    if s.is_s3:
        parts = urlsplit(s.path)
        if not parts.netloc:
            raise SettingsError("path", f"path must name a bucket, like "
                                f"\"s3://analytics-lake/millpond\"; got {s.path!r}")
        if s.endpoint_url is not None:
            ep = urlsplit(s.endpoint_url)
            if ep.scheme not in ("http", "https") or not ep.netloc:
                raise SettingsError("endpoint_url", "endpoint_url must be an http(s) URL like "
                                    f"\"https://s3.example.com\"; got {s.endpoint_url!r}")
        if (s.access_key_id is None) != (s.secret_access_key is None):
            raise SettingsError("secret_access_key", "access_key_id and secret_access_key go "
                                "together: give both, or neither to use the AWS credential chain")
    else:
        if not s.path.startswith("/"):
            raise SettingsError("path", "path must be an absolute directory or "
                                f"s3://bucket/prefix; got {s.path!r}")
        for field in ("endpoint_url", "access_key_id", "secret_access_key", "region"):
            if getattr(s, field) is not None:
                raise SettingsError(field, f"{field} only applies to an s3:// path")
    if not s.batch_interval_seconds >= MIN_BATCH_INTERVAL:
        raise SettingsError("batch_interval_seconds", "batch_interval_seconds must be at least "
                            f"{MIN_BATCH_INTERVAL:g}; got {s.batch_interval_seconds!r}")
    if not 1_000 <= s.row_group_size <= 10_000_000:
        raise SettingsError("row_group_size", "row_group_size must be between 1000 and "
                            f"10000000; got {s.row_group_size!r}")
    if s.compression_level is not None and not 1 <= s.compression_level <= 22:
        raise SettingsError("compression_level", "compression_level must be 1-22 (zstd); "
                            f"got {s.compression_level!r}")


def mask_settings(raw: dict) -> dict:
    return {k: _settings.mask_secret(v) if k in SECRET_FIELDS else v for k, v in raw.items()}


def make_store(s: ParquetSettings) -> ObjectStore:
    """The object store the settings describe."""
    if not s.is_s3:
        return LocalStore(s.path)
    parts = urlsplit(s.path)
    return S3Store(parts.netloc, parts.path, endpoint_url=s.endpoint_url,
                   access_key_id=s.access_key_id, secret_access_key=s.secret_access_key,
                   region=s.region)


def check(s: ParquetSettings) -> None:
    """The create-time test: can the location be listed (S3: endpoint, credentials, bucket) or
    created and written (a directory)? Raises SettingsError; writes nothing to a bucket."""
    import os

    from millpond.warehouses.parquet.stores import StoreError

    store = make_store(s)
    try:
        store.list("_manifests/")
    except StoreError as exc:
        raise SettingsError("path", f"cannot read {store.describe()}: {exc}") from None
    if not s.is_s3:
        try:
            os.makedirs(s.path, exist_ok=True)
        except OSError as exc:
            raise SettingsError("path", f"cannot create {s.path}: {exc.strerror}") from None
        if not os.access(s.path, os.W_OK | os.X_OK):
            raise SettingsError("path", f"{s.path} is not writable by millpond")


def moved(old: ParquetSettings, new: ParquetSettings) -> str | None:
    """The setting that changes where the files land (``path``, ``endpoint_url``), or
    None."""
    for field in ("path", "endpoint_url"):
        if getattr(old, field) != getattr(new, field):
            return field
    return None


def place(s: ParquetSettings) -> str:
    """Where the files land, for messages."""
    return make_store(s).describe()


def holds_loads(s: ParquetSettings) -> bool:
    """Whether the place already holds millpond's loads: a committed manifest."""
    from millpond.warehouses.parquet.manifest import MANIFEST_DIR
    from millpond.warehouses.parquet.stores import StoreError

    store = make_store(s)
    try:
        return bool(store.list(MANIFEST_DIR + "/"))
    except StoreError as exc:
        raise SettingsError("path", f"cannot read {store.describe()}: {exc}") from None
