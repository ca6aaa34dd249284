"""Where the result tables' Parquet files live: a local folder, or an S3 prefix (the lake).

Both keep one folder (prefix) per table holding immutable Parquet files that are added whole
and deleted only after a compaction has merged their rows into a newer file, so readers and
writers need exactly four operations: list a table's files, add a file atomically, read one,
delete one. :class:`LocalLake` does them on the file system (temp file + fsync + rename);
:class:`S3Lake` does them on S3:

- add: one ``PutObject`` of the whole file, built in memory first: S3 makes an object visible
  whole or not at all, so a writer killed at any moment leaves nothing half-written (a
  multipart upload that is never completed is invisible too, but it is never used here);
- list: one ``ListObjectsV2`` per 1,000 files of one table (compaction keeps that to tens);
- read: pyarrow's S3 file system, which DuckDB scans through Arrow (DuckDB's own ``httpfs``
  cannot be loaded on machines without network);
- compaction lease: a conditional ``PutObject`` (``If-None-Match: *``) of a lease object per
  table; a lease older than :data:`LEASE_S` belongs to a killed compactor and is broken. A
  server that ignores the condition makes two compactions possible at once, which costs
  duplicated work, never rows: merged files are written before the merged ones are deleted,
  and every read keeps the newest row per key.
"""

from __future__ import annotations

import io
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from edvmp_pipeline.catalog.parquet_files import (
    SCHEMA_FILE,
    data_files,
    ensure_table,
    table_lock,
    write_atomically,
)
from edvmp_pipeline.domain.errors import AccessDenied, ConfigError, StoreUnreachable
from edvmp_pipeline.settings import s3_endpoint_url

LEASE_S = 600.0
LEASE_NAME = "_compaction.lease"


def file_name(path: str | Path) -> str:
    """The last component of a lake path (local path or ``bucket/prefix/table/name``)."""
    return str(path).rsplit("/", 1)[-1]


def is_data_file(name: str) -> bool:
    """A table's data file (not the schema marker, a lease or a temp file)."""
    return name.endswith(".parquet") and not name.startswith((".", "_"))


class LocalLake:
    """The result tables as folders under ``root`` (the default catalog)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.local_root: Path | None = self.root

    @property
    def url(self) -> str:
        return str(self.root)

    def files(self, table: str) -> list[str]:
        return [str(p) for p in data_files(self.root / table)]

    def path(self, table: str, name: str) -> str:
        return str(self.root / table / name)

    def ensure(self, table: str, schema: pa.Schema) -> None:
        ensure_table(self.root, table, schema)

    def write(
        self, table: str, name: str, data: pa.Table, *, row_group_size: int | None = None
    ) -> str:
        folder = self.root / table
        folder.mkdir(parents=True, exist_ok=True)
        return str(write_atomically(data, folder / name, row_group_size=row_group_size))

    def read(self, path: str) -> pa.Table:
        return pq.ParquetFile(path).read()

    def put_blob(self, relative: str, body: bytes) -> str:
        """Store ``body`` at ``relative`` under the root (whole or not at all); returns its
        path. For files that are not table rows (posters, contact sheets)."""
        final = self.root / relative
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}-{uuid.uuid4().hex}.tmp")
        try:
            tmp.write_bytes(body)
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return str(final)

    def delete(self, path: str) -> None:
        Path(path).unlink(missing_ok=True)

    @contextmanager
    def lease(self, table: str, *, wait: bool) -> Iterator[bool]:
        with table_lock(self.root / table, wait=wait) as held:
            yield held

    def dataset(self, table: str, schema: pa.Schema, files: list[str] | None = None) -> ds.Dataset:
        return ds.dataset(files if files is not None else self.files(table), schema=schema)

    def exists(self) -> bool:
        return self.root.is_dir()


@dataclass(frozen=True)
class S3Location:
    """``s3://bucket/prefix`` split, with the prefix normalised to no slashes at either end."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> S3Location:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ConfigError(f"EDVMP_CATALOG={url!r} is not an s3://bucket[/prefix] URL")
        if parts.query or parts.fragment:
            raise ConfigError(f"EDVMP_CATALOG={url!r}: no ?query or #fragment in an S3 URL")
        prefix = parts.path.strip("/")
        if "//" in prefix or any(p in (".", "..") for p in prefix.split("/") if prefix):
            raise ConfigError(f"EDVMP_CATALOG={url!r}: empty, '.' or '..' path segment")
        return cls(parts.netloc, prefix)

    def key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class S3Lake:
    """The result tables under ``s3://bucket/prefix/<table>/`` (``EDVMP_CATALOG=s3://...``).

    ``client`` is a boto3 S3 client (writes, listing, deletes, leases); ``filesystem`` a
    ``pyarrow.fs.S3FileSystem`` on the same endpoint and credentials (reads).
    """

    def __init__(self, location: S3Location, client: Any, filesystem: Any) -> None:
        self.location = location
        self.client = client
        self.filesystem = filesystem
        self.local_root: Path | None = None

    @property
    def url(self) -> str:
        return self.location.url

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        """One S3 call, its failure as the project's one-line errors (retries are boto3's)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kwargs)
        except ClientError as exc:
            code = _error_code(exc)
            if code in ("NoSuchBucket", "404"):  # HeadBucket answers a bare 404
                raise ConfigError(
                    f"catalog {self.url}: bucket {self.location.bucket!r} does not exist "
                    "(create it, or point EDVMP_CATALOG elsewhere)"
                ) from None
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
                raise AccessDenied(f"catalog {self.url}: {what} refused ({code})") from None
            raise StoreUnreachable(f"catalog {self.url}: {what} failed ({code or exc})") from None
        except BotoCoreError as exc:
            raise StoreUnreachable(f"catalog {self.url}: {what} failed ({exc})") from None

    def _keys(self, prefix: str) -> Iterator[tuple[str, datetime]]:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.location.bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call("listing", self.client.list_objects_v2, **kwargs)
            for item in page.get("Contents", ()):
                yield item["Key"], item["LastModified"]
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")

    def files(self, table: str) -> list[str]:
        prefix = self.location.key(table) + "/"
        return sorted(
            f"{self.location.bucket}/{key}"
            for key, _ in self._keys(prefix)
            if "/" not in key[len(prefix) :] and is_data_file(file_name(key))
        )

    def path(self, table: str, name: str) -> str:
        return f"{self.location.bucket}/{self.location.key(table, name)}"

    def ensure(self, table: str, schema: pa.Schema) -> None:
        """Nothing to create per table: the schema is the code's (readers pass it)."""

    def _put(self, key: str, body: bytes, **extra: Any) -> None:
        self._call(
            f"writing {key}",
            self.client.put_object,
            Bucket=self.location.bucket,
            Key=key,
            Body=body,
            **extra,
        )

    def write(
        self, table: str, name: str, data: pa.Table, *, row_group_size: int | None = None
    ) -> str:
        buffer = io.BytesIO()
        pq.write_table(data, buffer, compression="zstd", row_group_size=row_group_size)
        key = self.location.key(table, name)
        self._put(key, buffer.getvalue())
        return f"{self.location.bucket}/{key}"

    def put_blob(self, relative: str, body: bytes) -> str:
        """Store ``body`` as the object ``relative`` under the prefix (one PutObject);
        returns its ``s3://`` URL."""
        key = self.location.key(*relative.split("/"))
        self._put(key, body, ContentType="image/jpeg" if key.endswith(".jpg") else
                  "application/octet-stream")  # fmt: skip
        return f"s3://{self.location.bucket}/{key}"

    def read(self, path: str) -> pa.Table:
        try:
            with self.filesystem.open_input_file(path) as handle:
                return pq.ParquetFile(handle).read()
        except FileNotFoundError:
            raise
        except OSError as exc:
            if "NoSuchKey" in str(exc) or "does not exist" in str(exc):
                raise FileNotFoundError(path) from None
            raise StoreUnreachable(f"catalog {self.url}: reading {path} failed ({exc})") from None

    def delete(self, path: str) -> None:
        key = path.split("/", 1)[1]
        self._call(
            f"deleting {key}", self.client.delete_object, Bucket=self.location.bucket, Key=key
        )

    @contextmanager
    def lease(self, table: str, *, wait: bool) -> Iterator[bool]:
        """Hold the table's compaction lease (see the module doc); yields False when another
        compactor holds it and ``wait`` is false."""
        from botocore.exceptions import ClientError

        key = self.location.key(table, LEASE_NAME)
        token = uuid.uuid4().hex
        deadline = time.monotonic() + LEASE_S
        while True:
            try:
                self.client.put_object(
                    Bucket=self.location.bucket, Key=key, Body=token.encode(), IfNoneMatch="*"
                )
                break
            except ClientError as exc:
                if _error_code(exc) not in ("PreconditionFailed", "ConditionalRequestConflict"):
                    raise StoreUnreachable(f"catalog {self.url}: lease on {table} failed") from None
            if self._break_stale_lease(key):
                continue
            if not wait or time.monotonic() > deadline:
                yield False
                return
            time.sleep(0.5)
        try:
            yield True
        finally:
            self.client.delete_object(Bucket=self.location.bucket, Key=key)

    def _break_stale_lease(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.location.bucket, Key=key)
        except ClientError:
            return True  # released meanwhile: try again
        age = (datetime.now(UTC) - head["LastModified"]).total_seconds()
        if age < LEASE_S:
            return False
        self.client.delete_object(Bucket=self.location.bucket, Key=key)
        return True

    def dataset(self, table: str, schema: pa.Schema, files: list[str] | None = None) -> ds.Dataset:
        paths = files if files is not None else self.files(table)
        return ds.dataset(paths, schema=schema, filesystem=self.filesystem, format="parquet")

    def exists(self) -> bool:
        """The bucket answers (a missing one is a ConfigError naming it).

        A one-key listing under the prefix rather than HeadBucket: a task role may list only
        its own prefix (``s3:prefix`` condition), which HeadBucket does not satisfy.
        """
        self._call(
            "opening the bucket",
            self.client.list_objects_v2,
            Bucket=self.location.bucket,
            Prefix=self.location.key("") + ("/" if self.location.prefix else ""),
            MaxKeys=1,
        )
        return True


Lake = LocalLake | S3Lake


def s3_lake(url: str) -> S3Lake:
    """The S3 lake at ``url``, on the endpoint and credentials of the object store's
    settings (``EDVMP_S3_ENDPOINT_URL``, ``AWS_*`` or the default credential chain)."""
    import boto3
    from botocore.config import Config
    from pyarrow import fs

    location = S3Location.parse(url)
    endpoint = s3_endpoint_url()
    region = os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    config = Config(
        connect_timeout=5,
        read_timeout=30,
        # Transient answers (500/503, throttling, resets) are retried here, with backoff.
        retries={"mode": "standard", "max_attempts": 5},
        signature_version="s3v4",
        s3={"addressing_style": "path"} if endpoint else {},
    )
    key_id = os.environ.get("AWS_ACCESS_KEY_ID") or None
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY") or None
    token = os.environ.get("AWS_SESSION_TOKEN") or None
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        config=config,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        aws_session_token=token,
    )
    options: dict[str, Any] = {
        "region": region,
        "connect_timeout": 5,
        "request_timeout": 30,
        "retry_strategy": fs.AwsStandardS3RetryStrategy(max_attempts=5),
    }
    if endpoint:
        parts = urlsplit(endpoint)
        options["endpoint_override"] = parts.netloc + parts.path.rstrip("/")
        options["scheme"] = parts.scheme or "https"
        options["force_virtual_addressing"] = False
    if key_id and secret:
        options.update(access_key=key_id, secret_key=secret, session_token=token)
    return S3Lake(location, client, fs.S3FileSystem(**options))


def open_lake(location: str | Path) -> Lake:
    """The lake a catalog location names: ``s3://...`` or a local folder."""
    text = str(location)
    if text.startswith("s3://"):
        return s3_lake(text)
    if "://" in text:
        raise ConfigError(f"EDVMP_CATALOG={text!r}: only local folders and s3:// URLs")
    return LocalLake(Path(text))


__all__ = ["LEASE_S", "SCHEMA_FILE", "Lake", "LocalLake", "S3Lake", "S3Location", "open_lake"]
