"""The Dagster code location: one ``Definitions`` object, wired from ``EDVMP_*`` settings."""

from __future__ import annotations

import dagster as dg

from edvmp_pipeline.adapters.object_store import object_store_from_env
from edvmp_pipeline.adapters.prober import FfprobeProber
from edvmp_pipeline.adapters.summarizers import summarizer_from_env
from edvmp_pipeline.defs.catalog_resource import CatalogResource
from edvmp_pipeline.defs.jobs import ingest_job
from edvmp_pipeline.defs.sensors.failure_sensors import incident_sensor, redrive_sensor
from edvmp_pipeline.defs.sensors.object_sensor import s3_object_sensor
from edvmp_pipeline.defs.sensors.sqs_sensor import sqs_event_sensor
from edvmp_pipeline.defs.video_analysis import analysis_settings_from_env
from edvmp_pipeline.defs.video_pipeline import build_video_assets
from edvmp_pipeline.domain.policy import configured_policy
from edvmp_pipeline.services.probe_ahead import ProbeAhead
from edvmp_pipeline.services.progress import ProgressReporter
from edvmp_pipeline.settings import catalog_location, env_float


def build_resources() -> dict[str, object]:
    """Resources from the environment; each has a local default."""
    return {
        "catalog": CatalogResource(root=catalog_location()),
        "object_store": object_store_from_env(),
        "prober": FfprobeProber(timeout_s=env_float("EDVMP_PROBE_TIMEOUT_S", 60.0)),
        "progress": ProgressReporter(),
        "probe_ahead": ProbeAhead(),
        "summarizer": summarizer_from_env(),
    }


# Read at load time: a malformed EDVMP_POLICY raises PolicyError here, so the code location
# fails to load with the message naming the rule, instead of checking nothing. The
# summarizer decides the summary asset's kind tag; EDVMP_ANALYSIS whether the analysis
# asset exists (and whether the policy may name its fields).
analysis = analysis_settings_from_env()
video_assets = build_video_assets(
    configured_policy(analysis=analysis is not None), summarizer_from_env(), analysis
)


defs = dg.Definitions(
    assets=[video_assets],
    jobs=[ingest_job],
    sensors=[s3_object_sensor, sqs_event_sensor, incident_sensor, redrive_sensor],
    resources=build_resources(),
)
