"""Jobs over the video assets (shared by definitions, sensors and ``edvmp ingest``)."""

from __future__ import annotations

import dagster as dg

from edvmp_pipeline.assets.partitions import videos_partitions

INGEST_JOB = "ingest_videos"

ingest_job = dg.define_asset_job(
    INGEST_JOB,
    selection=dg.AssetSelection.groups("videos"),
    partitions_def=videos_partitions,
    description="Process object versions (one or many partitions per run).",
)
