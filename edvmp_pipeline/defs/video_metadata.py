"""``video_metadata``: ffprobe every video version and land a normalised record.

No ``from __future__ import annotations`` here: Dagster resolves the config and resource
annotations of asset functions at definition time.
"""

from collections.abc import Iterator

import dagster as dg
from pydantic import Field

from edvmp_pipeline.adapters.object_store import ObjectStoreResource
from edvmp_pipeline.adapters.prober import FfprobeProber
from edvmp_pipeline.defs.catalog_resource import CatalogResource
from edvmp_pipeline.defs.partitions import videos_partitions
from edvmp_pipeline.defs.run_outcome import (
    downstream_released,
    fail_run_if_versions_failed,
    release_downstream,
)
from edvmp_pipeline.services.processing import RetrySettings, process_batch
from edvmp_pipeline.services.progress import ProgressReporter
from edvmp_pipeline.settings import probe_workers_default


class MetadataRunConfig(dg.Config):
    """Run options; the defaults are right for sensor runs and UI backfills."""

    only: list[str] = Field(default_factory=list)
    """Restrict the run to these partition keys of its range (``edvmp ingest`` uses it)."""
    force: bool = False
    """Probe versions again even when the catalog already has them as SUCCEEDED."""
    workers: int = 0
    """Parallel ffprobe processes; 0 means one per core."""
    retry_attempts: int = 4
    """Tries per version for transient store errors (unreachable, throttled)."""
    retry_base_delay_s: float = 0.5
    """First backoff delay; doubles per retry (full jitter), capped at 8 s."""


def _record_metadata(record) -> dict[str, dg.MetadataValue | str | int | float | None]:
    return {
        "format": record.format_name,
        "duration_s": record.duration_s,
        "video": f"{record.video_codec} {record.width}x{record.height} @ {record.fps:.3f} fps"
        if record.fps
        else f"{record.video_codec} {record.width}x{record.height}",
        "rotation": record.rotation,
        "audio": f"{record.audio_codec} {record.audio_channels} ch {record.sample_rate_hz} Hz"
        if record.audio_codec
        else "none",
        "streams": f"{record.n_video_streams} video, {record.n_audio_streams} audio, "
        f"{record.n_subtitle_streams} subtitle",
    }


@dg.asset(
    partitions_def=videos_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    output_required=False,
    group_name="videos",
    kinds={"ffprobe", "parquet"},
    description="Technical metadata of each video version (ffprobe, normalised), landed in "
    "the catalog's videos and streams tables.",
)
def video_metadata(
    context: dg.AssetExecutionContext,
    config: MetadataRunConfig,
    catalog: CatalogResource,
    object_store: ObjectStoreResource,
    prober: FfprobeProber,
    progress: dg.ResourceParam[ProgressReporter],
) -> Iterator[dg.AssetMaterialization | dg.MaterializeResult]:
    """Probe every version of the run's partitions; one materialisation per good version."""
    cat = catalog.catalog()
    outcome = process_batch(
        context.partition_keys,
        catalog=cat,
        store=object_store,
        prober=prober,
        run_id=context.run_id,
        workers=config.workers or probe_workers_default(),
        only=config.only,
        force=config.force,
        progress=progress,
        retry=RetrySettings(
            attempts=max(1, config.retry_attempts), base_delay_s=config.retry_base_delay_s
        ),
        log=context.log.warning,
    )
    if outcome.skipped:
        context.log.info(f"{len(outcome.skipped)} versions already catalogued, skipped")
    for f in outcome.failed:
        context.log.error(f"{f.partition_key}: [{f.error_class}] {f.reason}")
    if not outcome.failed and not downstream_released(context):
        # A run without the deferred-events tag (e.g. the asset page's Materialize button):
        # with no failure, the plain output is right for every partition of the run, and it
        # lets the summary and compliance steps run.
        yield dg.MaterializeResult(
            metadata={"versions": len(outcome.succeeded), "skipped": len(outcome.skipped)}
        )
        return
    for pk, version, record in outcome.succeeded:
        yield dg.AssetMaterialization(
            asset_key=context.asset_key,
            partition=pk,
            metadata={
                "object_key": version.object_key,
                "etag": version.etag,
                "size_bytes": version.size_bytes,
                **_record_metadata(record),
            },
        )
    # Before the gate: the summary and compliance steps must run for the good versions.
    yield from release_downstream(context)
    fail_run_if_versions_failed(
        context, cat, "video_metadata", len(outcome.succeeded) + len(outcome.failed)
    )
