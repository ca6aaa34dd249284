"""What the ingest and redrive use-cases need from whatever executes the pipeline.

The services decide *which* versions to run; running them is the Dagster wiring's job. They
meet here, so that ``services/`` never imports ``defs/``: the CLI (or a test) hands a
use-case the runner to use, :class:`edvmp_pipeline.defs.in_process_runs.InProcessRuns` for
runs executed in this process against the local Dagster instance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from edvmp_pipeline.catalog.store import Catalog


class PipelineRuns(Protocol):
    """Registers partitions and executes runs of the video pipeline."""

    def check_settings(self) -> None:
        """Refuse a bad setting of the pipeline (policy, prober, summarizer, store) with its
        one-line error, before the use-case registers or changes anything."""
        ...

    def add_partitions(self, keys: Sequence[str]) -> None:
        """Make ``keys`` known as partitions (existing ones are left alone)."""
        ...

    def reap_dead_runs(self, catalog: Catalog) -> list[str]:
        """Fail the runs whose process died; return their run ids."""
        ...

    def run_batches(
        self,
        keys: Sequence[str],
        *,
        source: str,
        batch_size: int,
        workers: int,
        retry_failed: bool = True,
        interrupted: Sequence[str] = (),
        trigger: str = "edvmp-ingest",
        attempt: int | None = None,
        on_done: Callable[[str, bool], None] | None = None,
    ) -> list[str]:
        """Process ``keys`` in runs of at most ``batch_size``; return the run ids."""
        ...
