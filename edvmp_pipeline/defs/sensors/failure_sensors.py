"""Failed runs become incidents; retryable ones are redriven with backoff, a bounded number
of times.

Two sensors, because a run-failure sensor reacts to one failure at a time and cannot wait:
``incident_sensor`` records the incident (with the time of the next attempt when the class is
retryable and attempts remain), and ``redrive_sensor`` launches the redrives that are due.
Permanent failures are never re-run automatically (``edvmp redrive`` does it on demand).
"""

from __future__ import annotations

import dagster as dg

from edvmp_pipeline.defs.catalog_resource import CatalogResource
from edvmp_pipeline.defs.jobs import ingest_job
from edvmp_pipeline.defs.run_failures import record_run_failure
from edvmp_pipeline.defs.tags import TAG_REDRIVE_OF, TAG_TRIGGER, attempt_tags
from edvmp_pipeline.services.incidents import due_redrives, record_redrives


@dg.run_failure_sensor(
    name="incident_sensor",
    # No monitored_jobs: every job of this code location, including the implicit asset job
    # behind the UI's Materialize button and backfills.
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=5,
    description="Classifies every failed ingest run into incident records in the catalog.",
)
def incident_sensor(context: dg.RunFailureSensorContext, catalog: CatalogResource) -> None:
    """Record the incidents of one failed run (idempotent per run)."""
    ids = record_run_failure(context.instance, context.dagster_run, catalog.catalog())
    context.log.info(f"run {context.dagster_run.run_id}: incidents {', '.join(ids) or 'none'}")


@dg.sensor(
    name="redrive_sensor",
    job=ingest_job,
    minimum_interval_seconds=10,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Re-runs versions of open retryable incidents whose backoff has elapsed.",
)
def redrive_sensor(
    context: dg.SensorEvaluationContext, catalog: CatalogResource
) -> dg.SensorResult:
    """Request one run per due redrive; the run key makes each attempt launch once."""
    cat = catalog.catalog()
    due = due_redrives(cat)
    if not due:
        return dg.SensorResult(skip_reason="no redrive due")
    requests = [
        dg.RunRequest(
            run_key=f"redrive:{incident_id}:{attempt}",
            partition_key=pk,
            tags={
                TAG_TRIGGER: "redrive-sensor",
                TAG_REDRIVE_OF: incident_id,
                **attempt_tags(attempt),
            },
        )
        for incident_id, pk, attempt in due
    ]
    record_redrives(cat, due)
    return dg.SensorResult(run_requests=requests)
