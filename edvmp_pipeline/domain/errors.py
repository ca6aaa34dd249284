"""Pipeline errors that carry their failure class.

Code that knows *why* something failed raises a subclass of :class:`PipelineError` with the
class name used by incidents (``corrupt_media``, ``empty_object`` ...). Anything else is
classified later from its type and message by the failure classifier.
"""

from __future__ import annotations


class PipelineError(Exception):
    """An error whose failure class is known where it is raised."""

    error_class: str = "unknown"
    retryable: bool = False

    def __init__(self, reason: str, *, error_class: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if error_class is not None:
            self.error_class = error_class


class MediaRejected(PipelineError):
    """The object is not a usable video (corrupt, truncated, empty, not video).

    ``error_class`` is one of ``corrupt_media``, ``unsupported_media``, ``empty_object``.
    Permanent: retrying the same bytes gives the same answer.
    """

    error_class = "corrupt_media"
    retryable = False


class ProbeTimeout(PipelineError):
    """ffprobe did not finish within the configured timeout."""

    error_class = "probe_timeout"
    retryable = True


class ObjectMissing(PipelineError):
    """The object (or that version of it) no longer exists in the store."""

    error_class = "object_missing"
    retryable = False


class StoreUnreachable(PipelineError):
    """The object store could not be reached (connection refused, DNS, timeout)."""

    error_class = "store_unreachable"
    retryable = True


class AccessDenied(PipelineError):
    """The store refused the credentials or the request."""

    error_class = "access_denied"
    retryable = False


class ConfigError(PipelineError):
    """Bad usage or configuration: missing folder, no such bucket, bad setting."""

    error_class = "config_error"
    retryable = False
