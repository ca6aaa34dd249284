"""Runs of the video pipeline executed in this process, for ``edvmp ingest`` and ``redrive``.

:class:`InProcessRuns` is the Dagster side of
:class:`edvmp_pipeline.services.pipeline_runs.PipelineRuns`; ``ingest_in_process`` and
``redrive_in_process`` bind it to the use-cases, for the CLI and for tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from edvmp_pipeline.adapters.dagster_instance import get_instance
from edvmp_pipeline.catalog.store import Catalog
from edvmp_pipeline.defs.batch_runs import add_partitions, run_batches
from edvmp_pipeline.defs.dead_runs import reap_dead_runs
from edvmp_pipeline.defs.tags import attempt_tags
from edvmp_pipeline.services.ingest import IngestReport, ingest
from edvmp_pipeline.services.redrive import RedriveOutcome, redrive


@dataclass
class InProcessRuns:
    """Pipeline runs executed in this process against ``given`` (by default, and opened
    only when first needed, the instance of ``DAGSTER_HOME`` or the project's default home,
    so that a bad source is reported before any Dagster storage is touched)."""

    given: dg.DagsterInstance | None = None
    resources: dict[str, object] | None = None
    """The runs' resources, built from the environment by :meth:`check_settings`."""

    @classmethod
    def from_environment(cls) -> InProcessRuns:
        """On the instance the environment names, opened on first use."""
        return cls()

    @property
    def instance(self) -> dg.DagsterInstance:
        """The instance the runs go to."""
        if self.given is None:
            self.given = get_instance()
        return self.given

    def check_settings(self) -> None:
        """Load the definitions (policy, analysis, summarizer) and build the resources from
        the environment; either raises the one-line error of a bad setting."""
        from edvmp_pipeline.definitions import build_resources

        self.resources = build_resources()

    def add_partitions(self, keys: Sequence[str]) -> None:
        """Add the dynamic partitions of ``keys`` not known yet."""
        add_partitions(self.instance, keys)

    def reap_dead_runs(self, catalog: Catalog) -> list[str]:
        """Fail the runs whose process died; return their run ids."""
        return reap_dead_runs(self.instance, catalog)

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
        """Execute runs of at most ``batch_size`` versions each; return their run ids."""
        return run_batches(
            self.instance,
            keys,
            source=source,
            batch_size=batch_size,
            workers=workers,
            retry_failed=retry_failed,
            interrupted=interrupted,
            trigger=trigger,
            extra_tags=attempt_tags(attempt) if attempt is not None else None,
            on_done=on_done,
            resources=self.resources,
        )


def ingest_in_process(source_text: str, **options: Any) -> IngestReport:
    """:func:`edvmp_pipeline.services.ingest.ingest` with runs executed in this process."""
    return ingest(source_text, runs=InProcessRuns.from_environment(), **options)


def redrive_in_process(**selection: Any) -> RedriveOutcome:
    """:func:`edvmp_pipeline.services.redrive.redrive` with runs executed in this process."""
    return redrive(runs=InProcessRuns.from_environment(), **selection)
