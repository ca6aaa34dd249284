"""The Dagster code location: one ``Definitions`` object, wired from ``EDVMP_*`` settings."""

from __future__ import annotations

import dagster as dg

from edvmp_pipeline.assets.partitions import videos_partitions
from edvmp_pipeline.assets.video_metadata import video_metadata
from edvmp_pipeline.resources.catalog_resource import CatalogResource
from edvmp_pipeline.resources.object_store import ObjectStoreResource
from edvmp_pipeline.resources.prober import FfprobeProber
from edvmp_pipeline.resources.progress import ProgressReporter
from edvmp_pipeline.settings import catalog_root, env_float

INGEST_JOB = "ingest_videos"

ingest_job = dg.define_asset_job(
    INGEST_JOB,
    selection=dg.AssetSelection.assets(video_metadata),
    partitions_def=videos_partitions,
    description="Process object versions (one or many partitions per run).",
)


def build_resources() -> dict[str, object]:
    """Resources from the environment; each has a local default."""
    return {
        "catalog": CatalogResource(root=str(catalog_root())),
        "object_store": ObjectStoreResource(
            endpoint_url=dg.EnvVar("EDVMP_S3_ENDPOINT_URL").get_value() or None,
            region=dg.EnvVar("AWS_DEFAULT_REGION").get_value() or None,
        ),
        "prober": FfprobeProber(timeout_s=env_float("EDVMP_PROBE_TIMEOUT_S", 60.0)),
        "progress": ProgressReporter(),
    }


defs = dg.Definitions(
    assets=[video_metadata],
    jobs=[ingest_job],
    resources=build_resources(),
)
