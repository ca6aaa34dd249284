"""Translate botocore exceptions into pipeline errors with a failure class."""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from edvmp_pipeline.domain.errors import (
    AccessDenied,
    ConfigError,
    ObjectMissing,
    PipelineError,
    StoreUnreachable,
)

_MISSING = {"NoSuchKey", "404", "NotFound", "PreconditionFailed", "412"}
_DENIED = {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden"}
_THROTTLED = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "503"}


class Throttled(PipelineError):
    """The store asked us to slow down."""

    error_class = "throttled"
    retryable = True


def translate_s3_error(exc: Exception, *, what: str) -> PipelineError:
    """A PipelineError for ``exc``; ``what`` names the bucket/key for the message."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code == "NoSuchBucket":
            return ConfigError(f"no such bucket: {what}")
        if code in _MISSING:
            return ObjectMissing(f"object missing: {what} (deleted or replaced since listed)")
        if code in _DENIED:
            return AccessDenied(f"access denied ({code}) to {what}")
        if code in _THROTTLED:
            return Throttled(f"throttled by the store ({code}) on {what}")
        return PipelineError(f"S3 error {code} on {what}: {exc}")
    if isinstance(exc, NoCredentialsError):
        return AccessDenied(f"no AWS credentials configured to read {what}")
    unreachable = (
        EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError | ConnectionClosedError
    )
    if isinstance(exc, unreachable):
        return StoreUnreachable(f"store unreachable reading {what}: {exc}")
    if isinstance(exc, BotoCoreError | ConnectionError):
        return StoreUnreachable(f"store error reading {what}: {exc}")
    return PipelineError(f"{type(exc).__name__} on {what}: {exc}")
