"""How a run reports the versions that failed in it, through Dagster's public API only.

A run may cover many versions, and one bad version must not stop the others, so the
pipeline step never raises for a version. Dagster's partition status then does the rest:
every partition of the run gets a planned materialisation when the run starts; the step logs
one ``AssetMaterialization`` per good (asset, version); and when any version failed the step
ends by raising one ``dg.Failure``, so the run is FAILURE and Dagster counts each planned
partition the run did not materialise as **Failed** (and leaves the good ones Materialized).

Each failed (asset, version) also gets an ``AssetObservation`` on its partition with the
failure class, the one-line reason, the object key, the runbook and the incident id, which
is what the partition's page shows next to its Failed status. The run failure carries the
same per-version figures as metadata (read by the incident sensor) and a one-line
description; it is raised with ``allow_retries=False`` and from this module only, so an
expected failure (corrupt media) shows its reason rather than a stack of the media code.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg

from edvmp_pipeline.catalog.state_store import NewIncident
from edvmp_pipeline.defs.tags import ERROR_CLASSES, ERRORS, FAILED_PARTITIONS, INCIDENT_IDS
from edvmp_pipeline.domain.records import ObjectVersion


@dataclass(frozen=True)
class AssetFailure:
    """One version that an asset of the run could not produce."""

    asset_key: dg.AssetKey
    partition_key: str
    version: ObjectVersion | None
    error_class: str
    reason: str


def failure_observation(failure: AssetFailure, incident: NewIncident | None) -> dg.AssetObservation:
    """What the failed partition's page shows: class, reason, object key, runbook, incident."""
    metadata: dict[str, dg.RawMetadataValue] = {
        "status": "FAILED",
        "error_class": failure.error_class,
        "reason": failure.reason,
    }
    if failure.version is not None:
        metadata["object_key"] = failure.version.object_key
        metadata["etag"] = failure.version.etag
    if incident is not None:
        metadata["incident_id"] = incident.incident_id
        metadata["runbook"] = incident.runbook
        metadata["action"] = incident.action
        metadata["failure_class"] = incident.failure_class
    return dg.AssetObservation(
        asset_key=failure.asset_key,
        partition=failure.partition_key,
        description=f"failed: [{failure.error_class}] {failure.reason}",
        metadata=metadata,
    )


def run_failure(
    failures: Sequence[AssetFailure], n_total: int, incidents: dict[str, NewIncident]
) -> dg.Failure:
    """The run's failure: a one-line summary, with per-version classes in its metadata."""
    by_version: dict[str, AssetFailure] = {}
    for f in failures:
        by_version.setdefault(f.partition_key, f)
    counts = Counter(f.error_class for f in by_version.values())
    first = next(iter(by_version.values()))
    where = first.version.object_key if first.version is not None else first.partition_key
    classes = ", ".join(f"{cls} ×{n}" for cls, n in counts.most_common())
    listed = list(by_version.values())[:200]
    return dg.Failure(
        description=f"{len(by_version)} of {n_total} versions failed ({classes}); first: "
        f"{where}: {first.reason}",
        metadata={
            FAILED_PARTITIONS: dg.MetadataValue.json([f.partition_key for f in listed]),
            ERROR_CLASSES: dg.MetadataValue.json({f.partition_key: f.error_class for f in listed}),
            ERRORS: dg.MetadataValue.json({f.partition_key: f.reason for f in listed}),
            INCIDENT_IDS: dg.MetadataValue.json({pk: i.incident_id for pk, i in incidents.items()}),
            "succeeded": n_total - len(by_version),
            "failed": len(by_version),
            "error_class": first.error_class,
        },
        # A whole-run retry would redo the good versions too; transient failures are retried
        # per version inside the step and redriven per version by the failure sensor.
        allow_retries=False,
    )
