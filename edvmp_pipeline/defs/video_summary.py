"""``video_summary``: a short human summary of every catalogued video version.

The summarizer resource (key ``summarizer``, chosen by ``EDVMP_SUMMARIZER``) is the offline
template by default, or Amazon Bedrock's Converse API. The step summarises the versions of its
run's partitions whose metadata is in the catalog and has no summary yet, writes them to the
``summaries`` table in one atomic file, and logs one materialisation per summarised version.

A summarizer failure never touches the metadata: the version's job is marked FAILED with
the failure class (``summarizer_error``, ``throttled``, ``summarizer_unavailable``) and the
run's gate (see ``run_outcome``) fails the run once for every version that failed in it.

Concurrency: the step runs in the Dagster concurrency pool ``bedrock``, so that many sensor
runs (one per object) do not all call the model at once. Give the pool a limit with
``dagster instance concurrency set bedrock 2`` (a pool without a limit does not restrict; a
``concurrency: {pools: {default_limit: N}}`` block in dagster.yaml limits every pool). Inside
one step, ``workers`` threads call the summarizer in parallel, so at most limit × workers
Converse calls are in flight.

No ``from __future__ import annotations`` here: Dagster resolves the config and resource
annotations of asset functions at definition time.
"""

from collections.abc import Iterator

import dagster as dg

from edvmp_pipeline.adapters.summarizers import SummarizerResource, Summary
from edvmp_pipeline.defs.catalog_resource import CatalogResource
from edvmp_pipeline.defs.partitions import videos_partitions
from edvmp_pipeline.defs.run_outcome import fail_run_if_versions_failed, versions_in_run
from edvmp_pipeline.defs.video_metadata import video_metadata
from edvmp_pipeline.domain.records import ObjectVersion
from edvmp_pipeline.services.summaries import DEFAULT_WORKERS, summarise_and_land
from edvmp_pipeline.settings import env_int

BEDROCK_POOL = "bedrock"
STEP = "video_summary"


class SummaryRunConfig(dg.Config):
    """Run options; the defaults are right for sensor runs, ``edvmp ingest`` and backfills."""

    force: bool = False
    """Summarise again versions that already have a summary of their current metadata."""
    workers: int = 0
    """Parallel summarizer calls; 0 means ``EDVMP_SUMMARY_WORKERS`` (default 4)."""


def _materialization_metadata(
    version: ObjectVersion, summary: Summary
) -> dict[str, dg.MetadataValue | str | int]:
    metadata: dict[str, dg.MetadataValue | str | int] = {
        "summary": dg.MetadataValue.text(summary.summary),
        "object_key": version.object_key,
        "summarizer": summary.summarizer,
        "model_id": summary.model_id,
    }
    optional: dict[str, str | int | None] = {
        "input_tokens": summary.input_tokens,
        "output_tokens": summary.output_tokens,
        "latency_ms": summary.latency_ms,
        "stop_reason": summary.stop_reason,
    }
    # The offline summarizer has no token counts: leave them out rather than show nulls.
    metadata.update({k: v for k, v in optional.items() if v is not None})
    return metadata


def summary_workers(config: SummaryRunConfig) -> int:
    """Threads for this step: the run config, else ``EDVMP_SUMMARY_WORKERS``, else 4."""
    return config.workers or env_int("EDVMP_SUMMARY_WORKERS", DEFAULT_WORKERS)


@dg.asset(
    partitions_def=videos_partitions,
    deps=[video_metadata],
    backfill_policy=dg.BackfillPolicy.single_run(),
    output_required=False,
    group_name="videos",
    pool=BEDROCK_POOL,
    kinds={"bedrock", "parquet"},
    description="A short human summary of each video version (offline template by default, "
    "Amazon Bedrock when EDVMP_SUMMARIZER=bedrock), landed in the catalog's summaries table.",
)
def video_summary(
    context: dg.AssetExecutionContext,
    config: SummaryRunConfig,
    catalog: CatalogResource,
    summarizer: SummarizerResource,
) -> Iterator[dg.AssetMaterialization]:
    """Summarise the run's versions that have metadata; one materialisation per summary."""
    cat = catalog.catalog()
    run_id = context.run.run_id
    todo, succeeded, failed = summarise_and_land(
        cat,
        summarizer,
        context.partition_keys,
        run_id=run_id,
        force=config.force,
        workers=summary_workers(config),
    )
    context.log.info(
        f"{len(succeeded)} summaries written, {len(failed)} failed, "
        f"{len(context.partition_keys) - len(todo)} versions without metadata or already "
        "summarised"
    )
    for pk, version, summary in succeeded:
        yield dg.AssetMaterialization(
            asset_key=context.asset_key,
            partition=pk,
            metadata=_materialization_metadata(version, summary),
        )
    for f in failed:
        context.log.error(f"{f.partition_key}: [{f.error_class}] {f.reason}")
    n_total = len(versions_in_run(cat, run_id) | {pk for pk, _, _ in succeeded})
    fail_run_if_versions_failed(context, cat, STEP, n_total)
