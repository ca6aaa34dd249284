"""Re-running the versions behind open incidents, on demand (``edvmp redrive``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from edvmp_pipeline.catalog.opening import open_catalog
from edvmp_pipeline.catalog.store import SUCCEEDED
from edvmp_pipeline.services.incidents import record_redrives
from edvmp_pipeline.services.pipeline_runs import PipelineRuns
from edvmp_pipeline.settings import DEFAULT_BATCH_SIZE


@dataclass
class RedriveOutcome:
    """What a redrive did."""

    incidents: list[str] = field(default_factory=list)
    partition_keys: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    succeeded: list[str] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    object_keys: dict[str, str] = field(default_factory=dict)


def redrive(
    *,
    incident_id: str | None = None,
    failure_class: str | None = None,
    fingerprint: str | None = None,
    runs: PipelineRuns,
) -> RedriveOutcome:
    """Run the versions of the matching OPEN incidents again, in-process, and report."""
    runs.check_settings()
    catalog = open_catalog(create=True)
    found = catalog.state.open_incidents(
        incident_id=incident_id, failure_class=failure_class, fingerprint=fingerprint
    )
    outcome = RedriveOutcome()
    if not found:
        return outcome
    outcome.incidents = [i.incident_id for i in found]
    outcome.partition_keys = list(dict.fromkeys(i.partition_key for i in found))
    outcome.object_keys = {i.partition_key: i.object_key or "" for i in found}
    runs.add_partitions(outcome.partition_keys)
    record_redrives(catalog, [(i.incident_id, i.partition_key, i.attempts + 1) for i in found])
    attempt = max(i.attempts + 1 for i in found)
    outcome.run_ids = runs.run_batches(
        outcome.partition_keys,
        source=found[0].source or "",
        batch_size=DEFAULT_BATCH_SIZE,
        workers=0,
        trigger="edvmp-redrive",
        attempt=attempt,
    )
    states = catalog.job_states(outcome.partition_keys)
    for pk in outcome.partition_keys:
        state = states.get(pk)
        if state is not None and state.status == SUCCEEDED:
            outcome.succeeded.append(pk)
        else:
            cls = state.error_class if state else None
            outcome.failed.append((pk, cls or "unknown", state.error if state else ""))
    return outcome
