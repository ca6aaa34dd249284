"""``video_summary``: the asset of each version's human summary (its spec and its events).

The summarizer resource (key ``summarizer``, chosen by ``EDVMP_SUMMARIZER``) is the offline
template by default, or Amazon Bedrock's Converse API; the asset's kind tag says which.

Concurrency: with Bedrock, the pipeline step runs in the Dagster concurrency pool
``bedrock``, so that many sensor runs (one per object) do not all call the model at once.
Give the pool a limit with ``dagster instance concurrency set bedrock 2`` (a pool without a
limit does not restrict). Inside one step, ``summary_workers`` threads call the summarizer
in parallel, so at most limit × workers Converse calls are in flight.
"""

from __future__ import annotations

import dagster as dg

from edvmp_pipeline.adapters.summarizers import BedrockSummarizer, SummarizerResource, Summary
from edvmp_pipeline.defs.partitions import videos_partitions
from edvmp_pipeline.defs.video_metadata import METADATA_KEY
from edvmp_pipeline.domain.records import ObjectVersion
from edvmp_pipeline.services.summaries import DEFAULT_WORKERS
from edvmp_pipeline.settings import env_int

SUMMARY_KEY = dg.AssetKey("video_summary")
BEDROCK_POOL = "bedrock"


def summarizer_kind(summarizer: SummarizerResource) -> str:
    """The kind tag of the configured summarizer: ``bedrock``, or ``python`` (offline)."""
    return "bedrock" if isinstance(summarizer, BedrockSummarizer) else "python"


def summary_spec(summarizer: SummarizerResource) -> dg.AssetSpec:
    """The asset spec, its kinds true to the summarizer this code location runs."""
    return dg.AssetSpec(
        SUMMARY_KEY,
        deps=[METADATA_KEY],
        partitions_def=videos_partitions,
        group_name="videos",
        kinds={summarizer_kind(summarizer), "parquet"},
        skippable=True,
        description="A short human summary of each video version (offline template by "
        "default, Amazon Bedrock when EDVMP_SUMMARIZER=bedrock), landed in the catalog's "
        "summaries table.",
    )


def summary_materialization(
    pk: str, version: ObjectVersion, summary: Summary
) -> dg.AssetMaterialization:
    """One version's summary materialisation."""
    metadata: dict[str, dg.RawMetadataValue] = {
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
    return dg.AssetMaterialization(asset_key=SUMMARY_KEY, partition=pk, metadata=metadata)


def summary_workers(configured: int) -> int:
    """Threads for the summaries: the run config, else ``EDVMP_SUMMARY_WORKERS``, else 4."""
    return configured or env_int("EDVMP_SUMMARY_WORKERS", DEFAULT_WORKERS)
