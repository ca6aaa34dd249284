"""Translate botocore exceptions into pipeline errors with a failure class.

The classes must agree with :mod:`edvmp_pipeline.domain.failure_classes`: the in-step retry
looks at the class raised here, the incident sensor classifies the same failure from its
message, and a store that is shutting down (500 InternalError on every HeadObject) was once
"unknown" to one and ``store_unreachable`` to the other.
"""

from __future__ import annotations

import http.client

import urllib3.exceptions
from botocore.exceptions import (
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from edvmp_pipeline.domain.errors import (
    AccessDenied,
    ConfigError,
    ObjectMissing,
    PipelineError,
    StoreUnreachable,
)

_MISSING = {"NoSuchKey", "404", "NotFound", "PreconditionFailed", "412"}
_DENIED = {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden"}
# A HEAD answer has no body, so botocore's code is the bare status: a bodiless 503 is kept
# with SlowDown (what S3 sends far more often than an outage), as the classifier's "(503)".
_THROTTLED = {
    "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
    "RequestThrottled", "TooManyRequests", "TooManyRequestsException", "429", "503",
}  # fmt: skip
# The server failed, not the request: the same request succeeds once the store is back.
_SERVER_FAILED = {
    "InternalError", "InternalServerError", "ServiceUnavailable", "BadGateway",
    "GatewayTimeout", "500", "502", "504",
}  # fmt: skip
_SERVER_FAILED_STATUS = frozenset({500, 502, 503, 504})

# Connections refused, reset, closed or timed out, and bodies cut off mid-read. botocore's
# ConnectionError covers EndpointConnectionError and ConnectTimeoutError, its HTTPClientError
# ConnectionClosedError, ReadTimeoutError and ResponseStreamingError; urllib3 and http.client
# errors can escape from a streaming body read, the builtin ones from a raw socket.
_UNREACHABLE: tuple[type[BaseException], ...] = (
    BotoConnectionError,
    HTTPClientError,
    IncompleteReadError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.TimeoutError,
    http.client.IncompleteRead,
    ConnectionError,
    TimeoutError,
)


class Throttled(PipelineError):
    """The store asked us to slow down."""

    error_class = "throttled"


def _status(exc: ClientError) -> int | None:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status if isinstance(status, int) else None


def translate_s3_error(exc: Exception, *, what: str) -> PipelineError:
    """A PipelineError for ``exc``; ``what`` names the bucket/key for the message.

    HTTP 500/502/503/504 answers (``InternalError``, ``ServiceUnavailable``, ``BadGateway``,
    ``GatewayTimeout``) and lost connections are :class:`StoreUnreachable` (retryable);
    ``SlowDown`` and other throttling is ``throttled`` (retryable); missing objects, refused
    credentials and configuration mistakes are permanent.
    """
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = _status(exc)
        if code == "NoSuchBucket":
            return ConfigError(f"no such bucket: {what}")
        if code in _MISSING:
            return ObjectMissing(f"object missing: {what} (deleted or replaced since listed)")
        if code in _DENIED:
            return AccessDenied(f"access denied ({code}) to {what}")
        if code in _THROTTLED or status == 429:
            return Throttled(f"throttled by the store ({code}) on {what}")
        if code in _SERVER_FAILED or status in _SERVER_FAILED_STATUS:
            shown = str(status or code) + (f" {code}" if code and code != str(status) else "")
            return StoreUnreachable(f"store unreachable: HTTP {shown} on {what}: {exc}")
        return PipelineError(f"S3 error {code} on {what}: {exc}")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return AccessDenied(f"no AWS credentials configured to read {what}")
    if isinstance(exc, NoRegionError):
        return ConfigError(f"invalid configuration: no AWS region set to read {what}: {exc}")
    if isinstance(exc, _UNREACHABLE):
        return StoreUnreachable(f"store unreachable reading {what}: {type(exc).__name__}: {exc}")
    # Anything else keeps its type name so the failure classifier can still place it.
    return PipelineError(f"{type(exc).__name__} on {what}: {exc}")
