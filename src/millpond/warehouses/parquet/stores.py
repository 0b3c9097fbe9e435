"""Where Parquet files go: a local directory or an S3-compatible bucket, with put-if-absent.

Why put-if-absent is the one write primitive: exactly-once in storage rests on "an object is
written once and never replaced". A re-upload after a crash then cannot clobber what a reader
may already be reading, and the manifest, written last with put-if-absent, is the commit point:
two attempts at the same batch cannot both commit.

- S3: ``PutObject`` with ``If-None-Match: *`` (S3 conditional writes, also honoured by moto and
  most S3-compatible stores); a 412 means the key exists. boto3 rather than pyarrow's
  ``S3FileSystem``: pyarrow's filesystem has no conditional put, and the files are small enough
  (one micro-batch per partition) to build in memory and send in one request.
- Local: the bytes go to a temporary file in the target directory, are fsynced, then
  ``os.link`` gives them their name: ``link`` fails with ``EEXIST`` instead of replacing, unlike
  ``rename``. The directory is fsynced so the name survives a power cut.

A deletion (:mod:`.erase`) needs two more: ``replace`` (an atomic overwrite: a temporary file
renamed over the old one locally, a plain ``PutObject`` in S3, whose readers see the old or the
new object whole) for the manifests it rewrites and the new files no manifest names yet, and
``delete`` for the files it replaced, and ``sweep`` for what a killed write left where no
listing shows it: a local write's temporary file (``.tmp-*``) holds the whole object once
it is fsynced, so a SIGKILL before its ``link`` / ``rename`` (or before its ``unlink``)
leaves a full copy of the rows under a hidden name; a deletion removes those too. An S3
``PutObject`` leaves no partial object (S3 keeps all of it or nothing), so there the sweep
only aborts multipart uploads left open under the prefix (none of ours makes one, but a
copy made by another tool could hold rows too).

Errors become :class:`StoreError` with ``transient`` set as a delivery run needs it: network
trouble, throttling and 5xx answers are transient; bad credentials, a missing bucket and
permission errors are not.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Protocol

__all__ = ["LocalStore", "ObjectStore", "S3Store", "StoreError"]


class StoreError(Exception):
    """A storage operation failed; ``transient`` says whether retrying may help."""

    def __init__(self, message: str, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class ObjectStore(Protocol):
    """The operations the Parquet writer and its eraser need. Keys are ``/``-separated, relative."""

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Write ``data`` at ``key`` unless it exists; True if written, False if it existed."""
        ...

    def get(self, key: str) -> bytes | None:
        """The object's bytes, None when absent."""
        ...

    def replace(self, key: str, data: bytes) -> None:
        """Write ``data`` at ``key`` whether or not it exists (readers see old or new)."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``; nothing when it is absent."""
        ...

    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` (relative keys, any order)."""
        ...

    def sweep(self) -> int:
        """Remove what interrupted writes left outside :meth:`list` (temporary files,
        open multipart uploads); how many. Callers make sure no write of theirs is under
        way (the location lock)."""
        ...

    def describe(self) -> str:
        """Where objects go, for messages."""
        ...


class LocalStore:
    """Objects as files under ``root`` (created when missing)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def describe(self) -> str:
        return str(self.root)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def put_if_absent(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                return False
            fd, tmp = tempfile.mkstemp(prefix=_TEMPORARY, dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    return False
                _fsync_dir(path.parent)
                return True
            finally:
                os.unlink(tmp)
        except OSError as exc:
            raise _local_error(exc, path) from None

    def replace(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=_TEMPORARY, dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            _fsync_dir(path.parent)
        except OSError as exc:
            raise _local_error(exc, path) from None

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise _local_error(exc, path) from None

    def get(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _local_error(exc, path) from None

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix.rstrip("/")) if prefix else self.root
        if not base.is_dir():
            return []
        out = []
        for path in base.rglob("*"):
            if path.is_file() and not path.name.startswith(_TEMPORARY):
                out.append(path.relative_to(self.root).as_posix())
        return out

    def sweep(self) -> int:
        if not self.root.is_dir():
            return 0
        swept = 0
        for path in self.root.rglob(_TEMPORARY + "*"):
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise _local_error(exc, path) from None
            swept += 1
        return swept


#: The prefix of a local write's temporary file (never listed; swept by a deletion).
_TEMPORARY = ".tmp-"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _local_error(exc: OSError, path: Path) -> StoreError:
    permanent = exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR)
    return StoreError(f"{path}: {exc.strerror or exc}", transient=not permanent)


#: S3 error codes that no retry fixes (credentials, bucket, permissions).
_PERMANENT_CODES = frozenset({
    "AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch",
    "NoSuchBucket", "InvalidBucketName", "AccountProblem", "InvalidRequest",
    "AuthorizationHeaderMalformed", "PermanentRedirect", "InvalidArgument",
})


class S3Store:
    """Objects under ``s3://bucket/prefix`` through boto3 (any S3-compatible endpoint)."""

    def __init__(self, bucket: str, prefix: str, *, endpoint_url: str | None = None,
                 access_key_id: str | None = None, secret_access_key: str | None = None,
                 region: str | None = None, timeout: float = 30.0) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint_url or None,
            aws_access_key_id=access_key_id or None,
            aws_secret_access_key=secret_access_key or None,
            region_name=region or None,
            # No retries here: the delivery run owns retries (a Retry outcome).
            config=Config(retries={"max_attempts": 1, "mode": "standard"},
                          connect_timeout=timeout, read_timeout=timeout,
                          s3={"addressing_style": "path"} if endpoint_url else None),
        )

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_if_absent(self, key: str, data: bytes) -> bool:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data,
                                   IfNoneMatch="*")
        except Exception as exc:  # noqa: BLE001 - botocore raises many types; classify all
            if _code(exc) in ("PreconditionFailed", "412"):
                return False
            raise self._error(exc, key) from None
        return True

    def replace(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, key) from None

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:  # noqa: BLE001
            if _code(exc) not in ("NoSuchKey", "404"):
                raise self._error(exc, key) from None

    def get(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except Exception as exc:  # noqa: BLE001
            if _code(exc) in ("NoSuchKey", "404"):
                return None
            raise self._error(exc, key) from None

    def list(self, prefix: str) -> list[str]:
        full = self._key(prefix)
        strip = len(self.prefix) + 1 if self.prefix else 0
        out: list[str] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=full):
                out.extend(obj["Key"][strip:] for obj in page.get("Contents", ()))
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, prefix) from None
        return out

    def sweep(self) -> int:
        swept = 0
        try:
            for page in self.client.get_paginator("list_multipart_uploads").paginate(
                    Bucket=self.bucket, Prefix=self._key("")):
                for upload in page.get("Uploads", ()):
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                                       UploadId=upload["UploadId"])
                    swept += 1
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, "") from None
        return swept

    def _error(self, exc: Exception, key: str) -> StoreError:
        code = _code(exc)
        where = f"{self.describe()}/{key}"
        if code is None:
            return StoreError(f"{where}: {type(exc).__name__}: {exc}", transient=True)
        status = _status(exc)
        transient = code not in _PERMANENT_CODES and (status is None or status >= 500
                                                      or status in (408, 409, 429))
        return StoreError(f"{where}: {code}: {exc}", transient=transient)


def _code(exc: Exception) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code") or "") or None
    return None


def _status(exc: Exception) -> int | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return None
