"""Object stores: listing versions and handing ffprobe something to read.

A local folder and any S3-compatible endpoint (SeaweedFS, MinIO, AWS) behind one resource.
For S3, ffprobe reads a presigned GET URL: FFmpeg's HTTP reader uses range requests, so only
the header and index travel, not the whole object (see ARCHITECTURE.md, "Probe in place").
"""

from __future__ import annotations

import errno
import http.client
import os
import ssl
import stat
import threading
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.session
import botocore.utils
import dagster as dg
from botocore.config import Config

from edvmp_pipeline.adapters.content_hash import ContentHashCache, NotRegularFile, hash_file
from edvmp_pipeline.adapters.s3_errors import Throttled, translate_s3_error
from edvmp_pipeline.domain.errors import (
    AccessDenied,
    ConfigError,
    ObjectMissing,
    PipelineError,
    StoreUnreachable,
)
from edvmp_pipeline.domain.object_keys import escaped_key_bytes, folder_object_key
from edvmp_pipeline.domain.partition_keys import normalise_etag
from edvmp_pipeline.domain.records import ObjectVersion
from edvmp_pipeline.domain.source_uri import SourceSpec
from edvmp_pipeline.settings import s3_endpoint_url

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


# Why a folder entry is not an object version; the ingest report lists each with its key.
SKIP_LEAVES_FOLDER = "symlink leaves the source folder"
SKIP_SYMLINK_LOOP = "symlink loop"
SKIP_BROKEN_SYMLINK = "broken symlink"
SKIP_SYMLINK_TO_FOLDER = "symlink to a folder (not followed)"
SKIP_NOT_REGULAR = "not a regular file"
SKIP_FOLDER_NOT_LISTED = "folder not listed"
SKIP_NO_STAT = "cannot stat"
SKIP_VANISHED = "vanished while listing"
SKIP_KEY_COLLISION = "its escaped key is another file's name"
SKIP_OWN_DATA = "edvmp's own data (EDVMP_HOME, DAGSTER_HOME or the catalog)"

# The ETag of a file whose bytes could not be read while listing. It is still an object of
# the library, so it gets a version of its own that fails when processed (with the reason
# and an incident) instead of aborting the listing or disappearing from it; size and mtime
# keep the key stable across scans while the file stays as it is.
UNREADABLE_ETAG_PREFIX = "unreadable-"


@dataclass(frozen=True)
class SkippedEntry:
    """A folder entry that is not an object version, and why.

    ``key`` is spelled like an object key (non-UTF-8 bytes escaped). ``incomplete`` marks
    entries that may hide objects (a subfolder that cannot be listed): the listing is then
    not the whole folder.
    """

    key: str
    reason: str
    detail: str = ""
    incomplete: bool = False

    def describe(self) -> str:
        """``reason (detail)``, one line."""
        return f"{self.reason} ({self.detail})" if self.detail else self.reason


@dataclass
class FolderListing:
    """The object versions of a folder and the entries that are not objects."""

    versions: list[ObjectVersion] = field(default_factory=list)
    skipped: list[SkippedEntry] = field(default_factory=list)


@dataclass(frozen=True)
class _Candidate:
    key: str
    path: bytes
    stat: os.stat_result
    escaped: bool


def _inside(real: bytes, root_real: bytes) -> bool:
    """Whether the resolved path ``real`` is the resolved folder ``root_real`` or under it."""
    return real == root_real or real.startswith(root_real.rstrip(b"/") + b"/")


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _classify(
    entry: os.DirEntry[bytes], rel: bytes, root_real: bytes
) -> _Candidate | SkippedEntry | None:
    """A file to hash, a skip, or None for a real subfolder to descend into."""
    key = folder_object_key(rel)
    try:
        is_link = entry.is_symlink()
    except OSError as exc:
        # Only when the file system gives no entry types and lstat itself fails.
        return SkippedEntry(key, SKIP_NO_STAT, _why(exc), incomplete=True)
    if is_link:
        # Resolved without touching the target: a link out of the folder (to /etc/shadow,
        # to a device) is never opened, not even stat'ed.
        if not _inside(os.path.realpath(entry.path), root_real):
            return SkippedEntry(key, SKIP_LEAVES_FOLDER)
        try:
            st = os.stat(entry.path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return SkippedEntry(key, SKIP_SYMLINK_LOOP)
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                return SkippedEntry(key, SKIP_BROKEN_SYMLINK)
            return SkippedEntry(key, SKIP_NO_STAT, _why(exc), incomplete=True)
        if stat.S_ISDIR(st.st_mode):
            # Never followed: no loop (a link to "." or to a parent) and no folder listed
            # twice under two names.
            return SkippedEntry(key, SKIP_SYMLINK_TO_FOLDER)
    else:
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            return SkippedEntry(key, SKIP_VANISHED)
        except OSError as exc:
            # E.g. a folder readable but not searchable: names without attributes.
            return SkippedEntry(key, SKIP_NO_STAT, _why(exc), incomplete=True)
        if stat.S_ISDIR(st.st_mode):
            return None
    if not stat.S_ISREG(st.st_mode):
        # A FIFO would block the hash (or ffprobe) forever; devices and sockets hold no file.
        return SkippedEntry(key, SKIP_NOT_REGULAR, _file_kind(st.st_mode))
    try:
        rel.decode("utf-8")
        escaped = False
    except UnicodeDecodeError:
        escaped = True
    return _Candidate(key, entry.path, st, escaped)


def _scan(
    folder: Path, exclude: Collection[Path] = ()
) -> tuple[list[_Candidate], list[SkippedEntry]]:
    """Walk ``folder`` in bytes (names need not be UTF-8), top-down in name order, leaving
    out the folders of ``exclude``."""
    root = os.fsencode(folder)
    root_real = os.path.realpath(root)
    excluded = {os.path.realpath(os.fsencode(p)) for p in exclude}
    candidates: list[_Candidate] = []
    skipped: list[SkippedEntry] = []
    pending: list[bytes] = [b""]
    while pending:
        rel_dir = pending.pop()
        try:
            with os.scandir(os.path.join(root, rel_dir) if rel_dir else root) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            if not rel_dir:
                raise ConfigError(f"cannot list folder {folder}: {_why(exc)}") from None
            skipped.append(
                SkippedEntry(folder_object_key(rel_dir), SKIP_FOLDER_NOT_LISTED, _why(exc), True)
            )
            continue
        subdirs = []
        for entry in entries:
            # Hidden entries (.git, .edvmp, editor swap files) are never part of a library.
            if entry.name.startswith(b"."):
                continue
            rel = rel_dir + b"/" + entry.name if rel_dir else entry.name
            found = _classify(entry, rel, root_real)
            if found is None and os.path.realpath(os.path.join(root, rel)) in excluded:
                skipped.append(SkippedEntry(folder_object_key(rel), SKIP_OWN_DATA))
            elif found is None:
                subdirs.append(rel)
            elif isinstance(found, SkippedEntry):
                skipped.append(found)
            else:
                candidates.append(found)
        pending.extend(reversed(subdirs))
    return candidates, skipped


def list_folder(
    folder: Path, cache: ContentHashCache, exclude: Collection[Path] = ()
) -> FolderListing:
    """Every regular, non-hidden file under ``folder`` (recursively) as an object version,
    and every entry that is not one with the reason.

    The folders of ``exclude`` (edvmp's own homes, when they sit inside the library) are
    left out whole: their databases are not videos, and probing them while they are
    written would only fail.

    Symlinks to files inside the folder are followed (the link's path is the key); symlinks
    that leave the folder, loops, broken links and links to folders are skipped, and so are
    FIFOs, sockets and devices. A file whose bytes cannot be read is still listed, with an
    ``unreadable-…`` ETag, so that it fails on its own when processed. Object keys of names
    that are not UTF-8 are escaped (see :mod:`edvmp_pipeline.domain.object_keys`).
    """
    try:
        str(folder).encode("utf-8")
    except UnicodeEncodeError:
        # Every key and message would carry the undecodable path: refuse it once, clearly.
        raise ConfigError(
            f"folder path is not valid UTF-8: {os.fsencode(folder)!r}; rename it"
        ) from None
    candidates, skipped = _scan(folder, exclude)
    literal = {c.key for c in candidates if not c.escaped}
    listing = FolderListing(skipped=skipped)
    for found in candidates:
        if found.escaped and found.key in literal:
            listing.skipped.append(SkippedEntry(found.key, SKIP_KEY_COLLISION))
            continue
        try:
            etag = cache.etag(Path(os.fsdecode(found.path)), found.stat)
        except NotRegularFile:
            listing.skipped.append(SkippedEntry(found.key, SKIP_NOT_REGULAR, "replaced"))
            continue
        except FileNotFoundError:
            listing.skipped.append(SkippedEntry(found.key, SKIP_VANISHED))
            continue
        except OSError:
            etag = f"{UNREADABLE_ETAG_PREFIX}{found.stat.st_size}-{found.stat.st_mtime_ns}"
        listing.versions.append(
            ObjectVersion(
                source=str(folder),
                object_key=found.key,
                etag=etag,
                size_bytes=found.stat.st_size,
                last_modified=datetime.fromtimestamp(found.stat.st_mtime, UTC),
            )
        )
    listing.skipped.sort(key=lambda e: e.key)
    return listing


def iter_folder(folder: Path, cache: ContentHashCache) -> Iterator[ObjectVersion]:
    """The object versions of :func:`list_folder` (its skipped entries dropped)."""
    yield from list_folder(folder, cache).versions


def local_path(source: str, object_key: str) -> str:
    """The file a local object key names (a path string; undecodable bytes as surrogates).

    The literal name first: an escaped key that is also a real file's name was skipped
    when listed, so the literal file is the one the key stands for.
    """
    literal = os.path.join(source, object_key)
    raw = escaped_key_bytes(object_key)
    if raw is None or os.path.lexists(literal):
        return literal
    return os.fsdecode(os.path.join(os.fsencode(source), raw))


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
        return _local_target(version)

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

    def download(self, version: ObjectVersion, dest: Path) -> Path:
        """Copy this version's bytes to ``dest`` (a local path) and return where they are.

        An S3 object is read once, streamed to ``dest`` (``If-Match`` its ETag: content
        replaced since it was listed is refused, not analysed as this version); a local file
        is not copied, its checked path is returned.
        """
        if not version.is_s3:
            return Path(_local_target(version).target)
        client = self.s3_client()
        what = f"s3://{version.bucket}/{version.object_key}"
        try:
            answer = client.get_object(
                Bucket=version.bucket, Key=version.object_key, IfMatch=version.etag
            )
            with open(dest, "wb") as out:
                for chunk in answer["Body"].iter_chunks(chunk_size=1 << 20):
                    out.write(chunk)
        except Exception as exc:
            if "PreconditionFailed" in str(exc) or "412" in str(exc):
                raise ObjectMissing(
                    f"object replaced: {what} no longer has ETag {version.etag}; the new "
                    "content is processed as a new version"
                ) from None
            raise translate_s3_error(exc, what=what) from None
        return dest


def _read_failure(shown: str, exc: OSError) -> PipelineError:
    if isinstance(exc, PermissionError):
        return AccessDenied(f"cannot read {shown}: permission denied")
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return ObjectMissing(f"object missing: {shown} (deleted since it was listed)")
    if exc.errno == errno.ELOOP:
        return ObjectMissing(f"object changed: {shown} is now a symlink loop")
    return PipelineError(f"cannot read {shown}: {_why(exc)}")


def _local_target(version: ObjectVersion) -> ProbeTarget:
    """Check a local version is still readable as listed; return its path for ffprobe.

    The listing's checks are repeated because the file may have changed since: a symlink
    out of the folder is not opened, a FIFO is not waited on (O_NONBLOCK, then fstat).
    Messages name the object by its key (valid UTF-8), never by the raw path.
    """
    shown = f"{version.source}/{version.object_key}"
    path = local_path(version.source, version.object_key)
    real = os.path.realpath(os.fsencode(path))
    if not _inside(real, os.path.realpath(os.fsencode(version.source))):
        raise ObjectMissing(
            f"object changed: {shown} is now a symlink that leaves the source folder (not followed)"
        )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise _read_failure(shown, exc) from None
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ObjectMissing(f"object changed: {shown} is no longer a regular file")
        try:
            head = handle.read(LEADING_BYTES)
        except OSError as exc:
            raise _read_failure(shown, exc) from None
    if version.etag.startswith(UNREADABLE_ETAG_PREFIX):
        raise ObjectMissing(
            f"object changed: {shown} could not be read when it was listed and can be now; "
            "ingest again to catalogue its content as a new version"
        )
    if st.st_size != version.size_bytes:
        raise ObjectMissing(
            f"object changed: {shown} is {st.st_size} bytes, the listed version had "
            f"{version.size_bytes}; the new content is a new version"
        )
    if _modified_since(version, st) and _content_hash(path) != version.etag:
        # Same size, other bytes: probing it would catalogue the new content as this version.
        raise ObjectMissing(
            f"object replaced: {shown} has other content than the listed version (same "
            "size, new modification time); the new content is a new version"
        )
    return ProbeTarget(path, head)


def _modified_since(version: ObjectVersion, st: os.stat_result) -> bool:
    """Whether the file's mtime differs from the listed version's (kept to microseconds)."""
    if version.last_modified is None:
        return False
    return abs(st.st_mtime - version.last_modified.timestamp()) > 2e-6


def _content_hash(path: str) -> str | None:
    """The file's content hash as the listing computes it; None when it cannot be read."""
    try:
        return hash_file(Path(path))
    except OSError:
        return None


# --- bounded range reads, for the container structure checks ---------------------------------

MAX_RANGE_READS = 72
"""Reads one :class:`RangeReader` makes at most: a structure walk reads one header of a few
bytes per top-level element and stops after 64 (``container_structure.MAX_TOP_LEVEL``)."""
MAX_RANGE_LENGTH = 4096


class RangeReader:
    """``read(offset, length) -> bytes`` at any offset of a probe target.

    A local path is read with ``os.pread``; an http(s) target (the presigned GET URL of an
    S3 object) with ``Range`` requests on one kept-alive connection, as ffprobe reads it.
    Nothing is opened before the first read. Reads are bounded: at most ``max_reads`` of at
    most :data:`MAX_RANGE_LENGTH` bytes; after that every read answers ``b""`` (no more
    data), which ends a structure walk without a verdict. Fewer bytes than asked (``b""``
    past the end) mean the object ends there. Failures are pipeline errors:
    :class:`ObjectMissing`, :class:`AccessDenied`, ``throttled`` and
    :class:`StoreUnreachable` (retryable), as for the other reads of the object.
    """

    def __init__(
        self, target: str, *, timeout_s: float = 15.0, max_reads: int = MAX_RANGE_READS
    ) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self.max_reads = max_reads
        self.reads = 0
        self._url = urlsplit(target) if target.lower().startswith(("http://", "https://")) else None
        self._fd: int | None = None
        self._unreadable = False
        self._conn: http.client.HTTPConnection | None = None

    def __call__(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``offset``."""
        if offset < 0 or length <= 0 or self._unreadable or self.reads >= self.max_reads:
            return b""
        self.reads += 1
        length = min(length, MAX_RANGE_LENGTH)
        if self._url is not None:
            return self._read_url(offset, length)
        return self._read_file(offset, length)

    def close(self) -> None:
        """Close the file or connection (reads after this open them again)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> RangeReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _read_file(self, offset: int, length: int) -> bytes:
        try:
            if self._fd is None:
                # O_NONBLOCK: a FIFO swapped in since the listing must not block the probe.
                fd = os.open(self.target, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    os.close(fd)
                    self._unreadable = True
                    return b""
                self._fd = fd
            return os.pread(self._fd, length, offset)
        except OSError as exc:
            # Undecodable name bytes escaped: the message goes into UTF-8 catalog columns.
            shown = os.fsencode(self.target).decode("utf-8", "backslashreplace")
            raise _read_failure(shown, exc) from None

    def _shown_url(self) -> str:
        # Never the query string: it carries the presigned URL's signature.
        assert self._url is not None
        return f"{self._url.scheme}://{self._url.netloc}{self._url.path}"

    def _connection(self) -> http.client.HTTPConnection:
        assert self._url is not None
        if self._conn is None:
            host, port = self._url.hostname or "", self._url.port
            if self._url.scheme.lower() == "https":
                # The CA bundle botocore honours, so both reads of the object trust alike.
                context = ssl.create_default_context(cafile=os.environ.get("AWS_CA_BUNDLE"))
                self._conn = http.client.HTTPSConnection(
                    host, port, timeout=self.timeout_s, context=context
                )
            else:
                self._conn = http.client.HTTPConnection(host, port, timeout=self.timeout_s)
        return self._conn

    def _read_url(self, offset: int, length: int) -> bytes:
        assert self._url is not None
        path = (self._url.path or "/") + (f"?{self._url.query}" if self._url.query else "")
        shown = self._shown_url()
        try:
            conn = self._connection()
            conn.request("GET", path, headers={"Range": f"bytes={offset}-{offset + length - 1}"})
            response = conn.getresponse()
            status = response.status
            data = response.read(length) if status == 206 else b""
            if status != 206 or not response.isclosed():
                # Whatever is left (more than asked, the whole object from a server that
                # ignores Range, an error document) is dropped with the connection, unread.
                self.close()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise StoreUnreachable(
                f"store unreachable: range read of {shown} failed: {type(exc).__name__}: {exc}"
            ) from None
        # 200: no range support, so no structure check rather than a download; 416: the
        # range starts past the end of the object.
        if status in (200, 206, 416):
            return data
        raise _http_read_failure(status, shown)


def _http_read_failure(status: int, shown: str) -> PipelineError:
    """The pipeline error for an HTTP status answered to a range read (as translate_s3_error
    classes S3's answers)."""
    if status in (404, 412):
        return ObjectMissing(f"object missing: {shown} (range read answered HTTP {status})")
    if status in (401, 403):
        return AccessDenied(f"access denied: range read of {shown} answered HTTP {status}")
    if status == 429:
        return Throttled(f"throttled by the store (HTTP 429) on a range read of {shown}")
    if status >= 500:
        return StoreUnreachable(f"store unreachable: HTTP {status} on a range read of {shown}")
    return PipelineError(f"range read of {shown} answered HTTP {status}")


def open_range_reader(target: str, *, timeout_s: float = 15.0) -> RangeReader:
    """A bounded :class:`RangeReader` for a probe target (local path or presigned URL);
    use it as a context manager so its file or connection is closed."""
    return RangeReader(target, timeout_s=timeout_s)


def object_store_from_env() -> ObjectStoreResource:
    """The object store named by ``EDVMP_S3_ENDPOINT_URL`` and ``AWS_DEFAULT_REGION``."""
    return ObjectStoreResource(
        endpoint_url=s3_endpoint_url(),
        region=os.environ.get("AWS_DEFAULT_REGION") or None,
    )
