"""Jobs over the video assets (shared by definitions, sensors and ``edvmp ingest``)."""

from __future__ import annotations

import dagster as dg

INGEST_JOB = "ingest_videos"

ingest_job = dg.define_asset_job(
    INGEST_JOB,
    selection=dg.AssetSelection.groups("videos"),
    description="Process object versions (one or many partitions per run).",
    # One process per run: the default multiprocess executor starts one more Python process
    # per step (~1 s of imports each), which on 2 cores tripled upload-to-catalog latency
    # under a steady stream of uploads (benchmarks/event_latency.py). Probes run in parallel
    # threads inside the step anyway.
    executor_def=dg.in_process_executor,
)
