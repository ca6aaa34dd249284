"""Jobs over the video assets (shared by definitions, sensors and ``edvmp ingest``)."""

from __future__ import annotations

import dagster as dg

from edvmp_pipeline.defs.partitions import videos_partitions
from edvmp_pipeline.defs.tags import DEFER_ASSET_EVENTS_TAG

INGEST_JOB = "ingest_videos"

ingest_job = dg.define_asset_job(
    INGEST_JOB,
    selection=dg.AssetSelection.groups("videos"),
    partitions_def=videos_partitions,
    description="Process object versions (one or many partitions per run).",
    # Per-partition outcome in multi-partition runs: the steps log one materialization per
    # good version and video_metadata's output only releases the later steps (summary,
    # compliance checks). See assets/run_outcome.py.
    tags={DEFER_ASSET_EVENTS_TAG: "true"},
    # One process per run: the default multiprocess executor starts one more Python process
    # per step (~1 s of imports each), which on 2 cores tripled upload-to-catalog latency
    # under a steady stream of uploads (benchmarks/event_latency.py). Probes run in parallel
    # threads inside the step anyway.
    executor_def=dg.in_process_executor,
)
