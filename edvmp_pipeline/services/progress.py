"""A progress hook for in-process runs.

``edvmp ingest`` runs Dagster in its own process and passes a reporter that moves its progress
bar; runs launched by the daemon or the UI get the silent default.
"""

from __future__ import annotations

from collections.abc import Callable


class ProgressReporter:
    """Called once per finished version with (partition_key, succeeded)."""

    def __init__(self, callback: Callable[[str, bool], None] | None = None) -> None:
        self._callback = callback

    def done(self, partition_key: str, succeeded: bool) -> None:
        """Report one finished version."""
        if self._callback is not None:
            self._callback(partition_key, succeeded)
