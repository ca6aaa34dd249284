"""Pipeline errors that carry their failure class.

Code that knows *why* something failed raises a subclass of :class:`PipelineError` with the
class name used by incidents (``corrupt_media``, ``empty_object`` ...). Anything else is
classified later from its type and message by the failure classifier.
"""

from __future__ import annotations

from edvmp_pipeline.domain.failure_classes import is_retryable_class


class PipelineError(Exception):
    """An error whose failure class is known where it is raised.

    Whether it is worth retrying is the failure class's to say (one taxonomy, in
    ``failure_classes``), so subclasses name their class and nothing else.
    """

    error_class: str = "unknown"

    @property
    def retryable(self) -> bool:
        """The failure class's verdict: worth running again."""
        return is_retryable_class(self.error_class)

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


class ProbeTimeout(PipelineError):
    """ffprobe did not finish within the configured timeout."""

    error_class = "probe_timeout"


class ObjectMissing(PipelineError):
    """The object (or that version of it) no longer exists in the store."""

    error_class = "object_missing"


class StoreUnreachable(PipelineError):
    """The object store could not be reached (connection refused, DNS, timeout)."""

    error_class = "store_unreachable"


class AccessDenied(PipelineError):
    """The store refused the credentials or the request."""

    error_class = "access_denied"


class ConfigError(PipelineError):
    """Bad usage or configuration: missing folder, no such bucket, bad setting."""

    error_class = "config_error"
