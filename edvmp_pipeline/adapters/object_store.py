"""Object stores: listing versions and handing ffprobe something to read.

A local folder and any S3-compatible endpoint (SeaweedFS, MinIO, AWS) behind one resource.
For S3, ffprobe reads a presigned GET URL: FFmpeg's HTTP reader uses range requests, so only
the header and index travel, not the whole object (see ARCHITECTURE.md, "Probe in place").
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import boto3
import botocore.session
import botocore.utils
import dagster as dg
from botocore.config import Config

from edvmp_pipeline.adapters.content_hash import ContentHashCache
from edvmp_pipeline.adapters.s3_errors import translate_s3_error
from edvmp_pipeline.domain.errors import ConfigError, ObjectMissing
from edvmp_pipeline.domain.partition_keys import normalise_etag
from edvmp_pipeline.domain.records import ObjectVersion
from edvmp_pipeline.domain.source_uri import SourceSpec

LEADING_BYTES = 64

_CLIENTS: dict[tuple, Any] = {}
_CLIENTS_LOCK = threading.Lock()


def _timestamp(value: str) -> datetime:
    """S3's ISO 8601 timestamps, parsed by the standard library.

    botocore's default parser (dateutil) costs ~0.3 ms a timestamp: a listing page of 1,000
    keys spent 300 ms on LastModified alone, most of a sensor tick.
    """
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return botocore.utils.parse_timestamp(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _session() -> boto3.session.Session:
    """A boto3 session whose responses use the fast timestamp parser (botocore's documented
    ``set_parser_defaults`` of its response-parser factory)."""
    core = botocore.session.get_session()
    core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=_timestamp)
    return boto3.session.Session(botocore_session=core)


@dataclass(frozen=True)
class ProbeTarget:
    """What ffprobe reads (a path or URL) and the object's first bytes (for diagnosis)."""

    target: str
    leading_bytes: bytes


def iter_folder(folder: Path, cache: ContentHashCache) -> Iterator[ObjectVersion]:
    """Every regular, non-hidden file under ``folder`` (recursively) as an object version."""
    from datetime import UTC, datetime

    for dirpath, dirnames, filenames in os.walk(folder):
        # Hidden folders (.git, .edvmp, editor swap dirs) are never part of a library.
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            if not path.is_file():
                continue
            rel = PurePosixPath(path.relative_to(folder).as_posix())
            yield ObjectVersion(
                source=str(folder),
                object_key=str(rel),
                etag=cache.etag(path, st),
                size_bytes=st.st_size,
                last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
            )


def env_credentials() -> dict[str, str]:
    """Keys from ``AWS_*`` variables as they are *now*, when set.

    boto3's default session resolves credentials once per process and keeps them; a
    long-lived process (the daemon's sensors, a test session) must see changed variables.
    Without them the usual chain (profiles, instance roles) applies.
    """
    keys = {
        "aws_access_key_id": os.environ.get("AWS_ACCESS_KEY_ID"),
        "aws_secret_access_key": os.environ.get("AWS_SECRET_ACCESS_KEY"),
        "aws_session_token": os.environ.get("AWS_SESSION_TOKEN"),
    }
    if not keys["aws_access_key_id"] or not keys["aws_secret_access_key"]:
        return {}
    return {k: v for k, v in keys.items() if v}


class ObjectStoreResource(dg.ConfigurableResource):
    """Access to local folders and to one S3-compatible endpoint.

    ``endpoint_url`` empty means AWS S3; credentials come from the usual AWS chain
    (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, profiles, instance roles).
    """

    endpoint_url: str | None = None
    region: str | None = None
    presign_expiry_s: int = 3600
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0

    def s3_client(self) -> Any:
        """A boto3 S3 client for the configured endpoint."""
        endpoint = self.endpoint_url or None
        config = Config(
            connect_timeout=self.connect_timeout_s,
            read_timeout=self.read_timeout_s,
            retries={"mode": "standard", "max_attempts": 3},
            # Without this boto3 presigns with the legacy Signature Version 2
            # (AWSAccessKeyId=...&Signature=...), which AWS S3 refuses for buckets created
            # since 2020 and which only a few regions accept at all.
            signature_version="s3v4",
            # Local servers (SeaweedFS, MinIO) have no per-bucket DNS names.
            s3={"addressing_style": "path"} if endpoint else {},
        )
        region = self.region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        credentials = env_credentials()
        # Building a client costs ~20 ms (endpoint and model loading); a sensor run probes
        # one object, an ingest thousands. Clients are thread-safe: one per configuration
        # (and per process: a forked run worker builds its own).
        key = (
            os.getpid(), endpoint, region, self.connect_timeout_s, self.read_timeout_s,
            tuple(sorted(credentials.items())),
        )  # fmt: skip
        with _CLIENTS_LOCK:
            client = _CLIENTS.get(key)
            if client is None:
                client = _session().client(
                    "s3", endpoint_url=endpoint, region_name=region, config=config, **credentials
                )
                _CLIENTS[key] = client
        return client

    def check_bucket(self, spec: SourceSpec) -> None:
        """Fail fast with a clear message when the bucket is missing or unreachable."""
        try:
            self.s3_client().head_bucket(Bucket=spec.bucket)
        except Exception as exc:
            err = translate_s3_error(exc, what=f"s3://{spec.bucket}")
            if "404" in str(exc) or "NoSuchBucket" in str(exc):
                raise ConfigError(f"no such bucket: s3://{spec.bucket}") from None
            raise err from None

    def iter_s3(self, spec: SourceSpec) -> Iterator[ObjectVersion]:
        """Every object under the bucket/prefix as a version (directory markers skipped)."""
        client = self.s3_client()
        paginator = client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=spec.bucket, Prefix=spec.prefix):
                for obj in page.get("Contents", []):
                    if obj["Key"].endswith("/"):
                        continue
                    yield ObjectVersion(
                        source=spec.source,
                        object_key=obj["Key"],
                        etag=normalise_etag(obj["ETag"]),
                        size_bytes=int(obj["Size"]),
                        last_modified=obj.get("LastModified"),
                    )
        except Exception as exc:
            raise translate_s3_error(exc, what=f"{spec.source}/{spec.prefix}") from None

    def probe_target(self, version: ObjectVersion) -> ProbeTarget:
        """Check the version still exists and return what ffprobe should read."""
        if version.is_s3:
            return self._s3_target(version)
        path = Path(version.source) / version.object_key
        try:
            st = path.stat()
            with open(path, "rb") as handle:
                head = handle.read(LEADING_BYTES)
        except FileNotFoundError:
            raise ObjectMissing(f"object missing: {path} (deleted since it was listed)") from None
        if st.st_size != version.size_bytes:
            raise ObjectMissing(
                f"object changed: {path} is {st.st_size} bytes, the listed version had "
                f"{version.size_bytes}; the new content is a new version"
            )
        return ProbeTarget(str(path), head)

    def _s3_target(self, version: ObjectVersion) -> ProbeTarget:
        client = self.s3_client()
        bucket, key = version.bucket, version.object_key
        what = f"s3://{bucket}/{key}"
        try:
            head = client.head_object(Bucket=bucket, Key=key)
            current = normalise_etag(head["ETag"])
            if current != version.etag:
                raise ObjectMissing(
                    f"object replaced: {what} now has ETag {current}, this version had "
                    f"{version.etag}; the new content is processed as a new version"
                )
            leading = b""
            if int(head.get("ContentLength", 0)) > 0:
                body = client.get_object(
                    Bucket=bucket, Key=key, Range=f"bytes=0-{LEADING_BYTES - 1}"
                )["Body"]
                leading = body.read()
            url = client.generate_presigned_url(
                "get_object",
                Params={"Bucket": bucket, "Key": key},
                ExpiresIn=self.presign_expiry_s,
            )
        except ObjectMissing:
            raise
        except Exception as exc:
            raise translate_s3_error(exc, what=what) from None
        return ProbeTarget(url, leading)


def object_store_from_env() -> ObjectStoreResource:
    """The object store named by ``EDVMP_S3_ENDPOINT_URL`` and ``AWS_DEFAULT_REGION``."""
    return ObjectStoreResource(
        endpoint_url=os.environ.get("EDVMP_S3_ENDPOINT_URL") or None,
        region=os.environ.get("AWS_DEFAULT_REGION") or None,
    )
