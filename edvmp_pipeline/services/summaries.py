"""Summaries of catalogued versions: which need one, summarising them, landing them.

Plain Python shared by the pipeline step and the benchmarks: no Dagster here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from edvmp_pipeline.adapters.summarizers import SummarizerResource, Summary
from edvmp_pipeline.catalog.store import Catalog
from edvmp_pipeline.domain.errors import PipelineError
from edvmp_pipeline.domain.records import ObjectVersion, VideoRecord
from edvmp_pipeline.services.per_version import map_in_threads, versions_due

# Parallel summarizer calls in one step: Bedrock latency is network-bound (about a second a
# call), so a few threads help; more mostly meet throttling.
DEFAULT_WORKERS = 4


@dataclass(frozen=True)
class SummaryFailure:
    """Why one version got no summary."""

    partition_key: str
    version: ObjectVersion
    error_class: str
    reason: str


def summarise(
    records: Mapping[str, tuple[ObjectVersion, VideoRecord]],
    summarizer: SummarizerResource,
    *,
    workers: int,
) -> tuple[list[tuple[str, ObjectVersion, Summary]], list[SummaryFailure]]:
    """Summarise every record (in parallel threads); failures are returned, never raised."""

    def work(
        item: tuple[str, tuple[ObjectVersion, VideoRecord]],
    ) -> tuple[str, ObjectVersion, Summary] | SummaryFailure:
        pk, (version, record) = item
        try:
            return pk, version, summarizer.summarize(record, version.object_key)
        except PipelineError as exc:
            return SummaryFailure(pk, version, exc.error_class, exc.reason)
        except Exception as exc:
            # Keep the type in the reason: the failure classifier reads it.
            return SummaryFailure(pk, version, "unknown", f"{type(exc).__name__}: {exc}")

    succeeded: list[tuple[str, ObjectVersion, Summary]] = []
    failed: list[SummaryFailure] = []
    for result in map_in_threads(work, sorted(records.items()), workers):
        if isinstance(result, SummaryFailure):
            failed.append(result)
        else:
            succeeded.append(result)
    return succeeded, failed


def summary_rows(
    succeeded: Sequence[tuple[str, ObjectVersion, Summary]],
) -> list[dict[str, object]]:
    """The ``summaries`` rows of a batch (the catalog adds ``created_at`` and ``run_id``)."""
    return [
        {
            "partition_key": pk,
            "object_key": version.object_key,
            "etag": version.etag,
            **summary.as_row(),
        }
        for pk, version, summary in succeeded
    ]


def summarise_and_land(
    catalog: Catalog,
    summarizer: SummarizerResource,
    partition_keys: Sequence[str],
    *,
    run_id: str,
    force: bool = False,
    workers: int = DEFAULT_WORKERS,
) -> tuple[list[str], list[tuple[str, ObjectVersion, Summary]], list[SummaryFailure]]:
    """The step's work without Dagster: summarise what needs it, land it, record failures.

    Returns (versions considered, summaries written, failures). The catalog is written
    before anything is reported, so whatever Dagster shows as materialised is in it.
    """
    todo = versions_due(catalog.job_states(partition_keys), "summary", run_id=run_id, force=force)
    records = catalog.video_records(todo)
    succeeded, failed = summarise(records, summarizer, workers=workers)
    catalog.write_summaries(summary_rows(succeeded), run_id=run_id)
    catalog.state.mark_failed({f.partition_key: (f.error_class, f.reason) for f in failed}, run_id)
    return todo, succeeded, failed
