"""Presigned uploads: how a client gets a video into the uploads bucket without S3 keys.

:func:`presign_upload` is the one place that hands out upload URLs; ``edvmp upload`` uses it
today and the HTTP API will return the same :class:`PresignedUpload` to its clients. The
client then sends the bytes with a plain HTTP ``PUT`` (:func:`put_file`), and the ETag the
server returns identifies the version: :func:`job_id_for` turns (bucket, key, ETag) into the
partition key the object sensor will give the version, so the uploader knows its job id
before any sensor has seen the object.

Light on purpose (no Dagster import): ``edvmp upload`` starts in a fraction of a second.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from xml.etree import ElementTree

from edvmp_pipeline.domain.errors import AccessDenied, ConfigError, PipelineError, StoreUnreachable

# The key rules are domain rules (pure, shared with anything else that names objects);
# re-exported because this module is where clients of the upload API look for them.
from edvmp_pipeline.domain.object_keys import (
    MAX_KEY_BYTES,
    InvalidObjectKey,
    validate_object_key,
)
from edvmp_pipeline.domain.partition_keys import normalise_etag, partition_key_for

__all__ = [
    "MAX_EXPIRY_S",
    "MAX_KEY_BYTES",
    "MAX_SINGLE_PUT_BYTES",
    "InvalidObjectKey",
    "PresignedUpload",
    "guess_content_type",
    "job_id_for",
    "presign_upload",
    "put_file",
    "validate_object_key",
]

# A single PUT takes at most 5 GiB; larger objects need a multipart upload.
MAX_SINGLE_PUT_BYTES = 5 * 1024**3
# SigV4 presigned URLs are valid for at most 7 days.
MAX_EXPIRY_S = 7 * 24 * 3600
# Bigger writes than http.client's 8 KiB default: far fewer system calls on a large upload.
_BLOCK_SIZE = 1024 * 1024
# type/subtype with optional parameters; anything else would be a broken or injected header.
# Between them only HTTP's optional whitespace (space, tab): "\s" also took CR/LF, so
# "video/mp4\r\n; a=b" was signed and handed back as a header no client can send. A value
# is a token, a comma list as browsers' MediaRecorder writes it (codecs=vp8,opus), or a
# quoted string (RFC 6381's codecs="avc1.42E01E, mp4a.40.2"), never with control characters.
_PARAM_VALUE = r'[\w.+,-]+|"(?:[^"\\\x00-\x1f\x7f]|\\[\x20-\x7e])*"'
_CONTENT_TYPE = re.compile(rf"[\w.+-]+/[\w.+-]+(?:[ \t]*;[ \t]*[\w.+-]+=(?:{_PARAM_VALUE}))*")
_DENIED_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "RequestTimeTooSkewed",
    "ExpiredToken",
    "InvalidToken",
}


@dataclass(frozen=True)
class PresignedUpload:
    """Everything a client needs to upload one object: send ``method`` to ``url`` with
    exactly ``headers`` (they are part of the signature) and the file as the body."""

    url: str
    method: str = "PUT"
    headers: dict[str, str] = field(default_factory=dict)


def presign_upload(
    client: Any,
    bucket: str,
    key: str,
    expires_s: int = 3600,
    content_type: str | None = None,
    *,
    content_length: int | None = None,
) -> PresignedUpload:
    """A presigned ``PUT`` for ``s3://bucket/key``, valid for ``expires_s`` seconds.

    ``client`` is a boto3 S3 client whose credentials may write the bucket; nothing is sent
    to the server (signing is local), so a missing bucket or a refused key shows only when
    the upload is attempted. With ``content_type`` the type is signed: the client must send
    that ``Content-Type`` (returned in ``headers``) and the object is stored with it. With
    ``content_length`` the length is signed too: a body of any other size is refused by the
    server (the only size bound a presigned PUT can carry).
    Raises :class:`InvalidObjectKey` / :class:`ConfigError` for bad arguments and
    :class:`AccessDenied` when no credentials are configured.
    """
    validate_object_key(key)
    if not bucket:
        raise ConfigError("no bucket given (set EDVMP_BUCKET)")
    if content_type is not None and not _CONTENT_TYPE.fullmatch(content_type):
        raise ConfigError(f"not a valid Content-Type: {content_type!r} (e.g. video/mp4)")
    if not 1 <= expires_s <= MAX_EXPIRY_S:
        raise ConfigError(f"expiry must be 1..{MAX_EXPIRY_S} seconds, got {expires_s}")
    params: dict[str, str] = {"Bucket": bucket, "Key": key}
    headers: dict[str, str] = {}
    if content_type:
        params["ContentType"] = content_type
        headers["Content-Type"] = content_type
    if content_length is not None:
        if not 0 < content_length <= MAX_SINGLE_PUT_BYTES:
            raise ConfigError(f"content length must be 1..{MAX_SINGLE_PUT_BYTES} bytes")
        params["ContentLength"] = content_length
        headers["Content-Length"] = str(content_length)
    try:
        url = client.generate_presigned_url(
            "put_object", Params=params, ExpiresIn=expires_s, HttpMethod="PUT"
        )
    except Exception as exc:
        # Lazy: botocore is already loaded by the caller's client; keeps this module light.
        from edvmp_pipeline.adapters.s3_errors import translate_s3_error

        raise translate_s3_error(exc, what=f"s3://{bucket}/{key}") from None
    return PresignedUpload(url=url, method="PUT", headers=headers)


def job_id_for(bucket: str, key: str, etag: str) -> str:
    """The job id of an uploaded version: the partition key the object sensor gives it."""
    return partition_key_for(f"s3://{bucket}", key, normalise_etag(etag))


class _ProgressReader:
    """A read-only file wrapper that reports how many bytes http.client has taken."""

    def __init__(self, handle: BinaryIO, on_progress: Callable[[int], None] | None) -> None:
        self._handle = handle
        self._on_progress = on_progress

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        if data and self._on_progress is not None:
            self._on_progress(len(data))
        return data


def _s3_error(body: bytes) -> tuple[str, str]:
    """(Code, Message) from an S3 XML error document; empty strings when there is none."""
    try:
        # bandit B314 waived: S3's own error document; expat >= 2.4.1 stops entity bombs
        root = ElementTree.fromstring(body)  # nosec B314
    except ElementTree.ParseError:
        return "", body[:200].decode("utf-8", "replace").strip()
    return (root.findtext("Code") or "").strip(), (root.findtext("Message") or "").strip()


def _refusal(status: int, reason: str, body: bytes, what: str) -> PipelineError:
    code, message = _s3_error(body)
    detail = f"{code}: {message}" if code else f"HTTP {status} {reason} {message}".strip()
    if code == "NoSuchBucket":
        return ConfigError(f"no such bucket: {what}")
    if code in _DENIED_CODES or status == 403:
        return AccessDenied(f"access denied uploading {what} ({detail})")
    if code == "KeyTooLongError":
        return InvalidObjectKey(
            f"object key refused as too long by the store: {what} (S3 allows 1024 bytes; "
            "some servers, e.g. SeaweedFS, also allow at most 255 per '/'-separated part)"
        )
    if code == "EntityTooLarge":
        return ConfigError(f"too large for one PUT: {what} ({detail})")
    if status >= 500:
        # 500/503 (SlowDown, InternalError) are the server's trouble: worth trying again.
        return StoreUnreachable(f"the store failed the upload of {what} ({detail}); retry")
    return PipelineError(f"upload of {what} refused ({detail})")


def put_file(
    upload: PresignedUpload,
    path: Path,
    *,
    what: str | None = None,
    timeout_s: float = 60.0,
    on_progress: Callable[[int], None] | None = None,
) -> str:
    """Send ``path`` as the body of ``upload`` and return the ETag the server answered.

    The file is streamed (1 MiB writes), never read into memory; ``on_progress`` receives
    the size of each block as it is sent. ``timeout_s`` bounds every socket operation, so a
    stalled server fails instead of hanging. ``what`` names the object in error messages.
    Connects directly (no HTTP proxy). Raises :class:`ConfigError` (missing file, missing
    bucket, too large), :class:`AccessDenied` (refused or expired signature) or
    :class:`StoreUnreachable` (cannot connect, connection lost, server error).
    """
    what = what or urllib.parse.urlsplit(upload.url)._replace(query="").geturl()
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ConfigError(f"no such file: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not path.is_file():
        raise ConfigError(f"not a regular file: {path}")
    if size > MAX_SINGLE_PUT_BYTES:
        raise ConfigError(
            f"{path} is {size} bytes; a single presigned PUT takes at most 5 GiB "
            "(multipart uploads are not supported yet)"
        )
    parts = urllib.parse.urlsplit(upload.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"not an http(s) upload URL: {what}")
    connection_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    conn = connection_class(parts.hostname, parts.port, timeout=timeout_s, blocksize=_BLOCK_SIZE)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    # Content-Length, never chunked encoding: presigned S3 PUTs do not accept chunked bodies.
    headers = {**upload.headers, "Content-Length": str(size)}
    if not any(name.lower() == "content-type" for name in headers):
        # Otherwise no type is sent and servers store binary/octet-stream anyway; be explicit.
        headers["Content-Type"] = "application/octet-stream"
    try:
        try:
            with path.open("rb") as handle:
                # The server may refuse (403, 404) before reading the whole body and close
                # the connection; its answer, if it sent one, says why.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    conn.request(
                        upload.method,
                        target,
                        body=_ProgressReader(handle, on_progress),
                        headers=headers,
                    )
                response = conn.getresponse()
                body = response.read()
        except PermissionError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
        except (OSError, http.client.HTTPException) as exc:
            reason = str(exc) or type(exc).__name__
            raise StoreUnreachable(f"upload of {what} failed: {reason}") from None
    finally:
        conn.close()
    if not 200 <= response.status < 300:
        raise _refusal(response.status, response.reason, body, what)
    etag = response.getheader("ETag")
    if not etag:
        raise PipelineError(f"the store accepted {what} but returned no ETag")
    return normalise_etag(etag)


def guess_content_type(path: Path) -> str | None:
    """A MIME type from the file name (``video/mp4``), or None when unknown."""
    import mimetypes

    guessed, _ = mimetypes.guess_type(path.name, strict=False)
    return guessed if guessed and _CONTENT_TYPE.fullmatch(guessed) else None
