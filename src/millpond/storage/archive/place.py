# pyright: basic
# (pyarrow and boto3 ship no type information: strict mode would flag every call into them)
"""Where archive files live: a local directory (the default, ``<data dir>/archive``) or an
S3-compatible bucket (``s3://bucket/prefix``).

Both offer the same four operations. A write is whole or absent: locally a temporary
file, fsync, rename and a directory fsync (:func:`files.write`); in a bucket the file is
built in a local staging directory, then uploaded (an S3 ``PUT`` is atomic: a reader sees
the whole object or none). Reads open the object for random access (pyarrow's
``S3FileSystem``), so a window scan fetches only the row groups it needs. Credentials come
from the standard ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (/ ``AWS_REGION``)
environment, never from millpond's config files.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from millpond.storage.archive import files
from millpond.storage.archive.files import FileStats


class Place(Protocol):
    def write(self, name: str, chunks: Iterable[Sequence[files.Row]], first_seq: int,
              last_seq: int) -> FileStats:
        """Write a file durably under ``name`` (whole or absent)."""
        ...

    def open(self, name: str) -> Any:
        """The file for ``pyarrow.parquet.ParquetFile`` (a path or a random-access file)."""
        ...

    def remove(self, name: str) -> None:
        """Delete the file if it exists."""
        ...

    def names(self) -> set[str]:
        """Every archive file present (listed or not)."""
        ...

    def ages(self) -> dict[str, float]:
        """Seconds since each file of :meth:`names` was last written."""
        ...

    def describe(self) -> str: ...


class LocalPlace:
    def __init__(self, directory: Path):
        self.directory = directory

    def write(self, name: str, chunks: Iterable[Sequence[files.Row]], first_seq: int,
              last_seq: int) -> FileStats:
        return files.write(self.directory, name, chunks, first_seq, last_seq)

    def open(self, name: str) -> Any:
        return self.directory / name

    def remove(self, name: str) -> None:
        with contextlib.suppress(OSError):
            (self.directory / name).unlink()

    def names(self) -> set[str]:
        if not self.directory.is_dir():
            return set()
        return {p.name for p in self.directory.iterdir()
                if p.suffix in (".parquet", ".tmp")}

    def ages(self) -> dict[str, float]:
        now = time.time()
        out: dict[str, float] = {}
        for name in self.names():
            with contextlib.suppress(OSError):
                out[name] = now - (self.directory / name).stat().st_mtime
        return out

    def describe(self) -> str:
        return str(self.directory)


class S3Place:
    def __init__(self, url: str, endpoint: str = ""):
        import boto3
        from pyarrow import fs

        self._args = (url, endpoint)
        rest = url.removeprefix("s3://")
        self.bucket, _, prefix = rest.partition("/")
        self.prefix = prefix.strip("/")
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") \
            or "us-east-1"
        self.client = boto3.client("s3", endpoint_url=endpoint or None, region_name=region)
        options: dict[str, Any] = {"region": region}
        if endpoint:
            scheme, _, host = endpoint.partition("://")
            options |= {"endpoint_override": host or scheme,
                        "scheme": scheme if host else "https"}
        self.fs = fs.S3FileSystem(**options)

    def __reduce__(self) -> tuple[type[S3Place], tuple[str, str]]:
        """Pickled as its URL and endpoint (the archive's sealing process opens its own
        clients: boto3's and pyarrow's do not pickle)."""
        return S3Place, self._args

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def write(self, name: str, chunks: Iterable[Sequence[files.Row]], first_seq: int,
              last_seq: int) -> FileStats:
        with tempfile.TemporaryDirectory(prefix="millpond-archive-") as staging:
            stats = files.write(Path(staging), name, chunks, first_seq, last_seq)
            self.client.upload_file(str(Path(staging) / name), self.bucket, self._key(name))
        return stats

    def open(self, name: str) -> Any:
        return self.fs.open_input_file(f"{self.bucket}/{self._key(name)}")

    def remove(self, name: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(name))

    def names(self) -> set[str]:
        return set(self.ages())

    def ages(self) -> dict[str, float]:
        prefix = f"{self.prefix}/" if self.prefix else ""
        now = time.time()
        out: dict[str, float] = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix):
            for o in page.get("Contents", ()):
                name = o["Key"][len(prefix):]
                if "/" not in name and name.endswith(".parquet"):
                    out[name] = now - o["LastModified"].timestamp()
        return out

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def open_place(where: str, endpoint: str = "") -> Place:
    """``s3://bucket/prefix`` or a directory."""
    if where.startswith("s3://"):
        return S3Place(where, endpoint)
    return LocalPlace(Path(where))
